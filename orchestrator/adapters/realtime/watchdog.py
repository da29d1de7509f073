"""The watchdog: decides when a Realtime client is beyond the library's own recovery.

The library reconnects after a dropped socket and rejoins an errored channel by itself, but it
gives up silently after `max_retries`, never rejoins a channel the server closed, loses its
reader to any exception in a handler, and notices a half-open socket only through websockets'
keepalive (~40-50 s). Each of those is one rule below; a rule that fires means "rebuild the
whole client".
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from orchestrator.adapters.realtime.client import (
    ClientHandle,
    bindings_have_ids,
    connection,
    heartbeat_ended,
    reader_ended,
)


class Watchdog:
    """One per client generation; `check` is called every `check_interval` by the source."""

    def __init__(
        self,
        handle: ClientHandle,
        subscribed: Callable[[], bool],
        activity: Callable[[], float],
        now: float,
        *,
        stall_timeout: float,
        ping_interval: float,
        rejoin_timeout: float,
        check_interval: float,
    ) -> None:
        self._handle = handle
        self._subscribed = subscribed
        self._activity = activity
        self._stall_timeout = stall_timeout
        self._ping_interval = ping_interval
        self._rejoin_timeout = rejoin_timeout
        self._check_interval = check_interval
        self._last_check = now
        self._unhealthy_since: float | None = now
        self._healthy_since: float | None = None
        self.longest_healthy = 0.0  # the source resets its backoff after a stable generation
        self.stalled = False
        self._ws: Any = None
        self._pong: Any = None
        self._last_reply = now
        self._last_ping = -math.inf

    async def check(self, now: float) -> str | None:
        """Look at the client once; return why it must be rebuilt, or None."""
        self._discount_blind_time(now)
        client, channel = self._handle.client, self._handle.channel
        if reader_ended(client):
            return "reader_ended"  # died in a handler, or reconnect retries exhausted
        if heartbeat_ended(client):
            return "heartbeat_ended"
        if channel.is_closed:
            return "channel_closed"  # phx_close: the library never rejoins a closed channel
        if channel.is_joined and not bindings_have_ids(channel):
            return "bindings_without_ids"  # joined, but events would never match a binding
        return self._track_subscription(now) or await self._probe(now)

    def _discount_blind_time(self, now: float) -> None:
        # If the event loop was busy elsewhere (a long synchronous stretch, a GC pause), the
        # reader could not run either: silence in that time proves nothing about the server.
        # Without this, the first check after a 5 s block would call a healthy socket stalled.
        blind = now - self._last_check - 2 * self._check_interval
        self._last_check = now
        if blind > 0:
            self._last_reply += blind
            if self._unhealthy_since is not None:
                self._unhealthy_since += blind

    def _track_subscription(self, now: float) -> str | None:
        # Covers the library's own recovery taking too long: reconnecting (outage), joins that
        # time out or are refused, a channel errored by phx_error or a system error message.
        if self._subscribed():
            self._unhealthy_since = None
            if self._healthy_since is None:
                self._healthy_since = now
            self.longest_healthy = max(self.longest_healthy, now - self._healthy_since)
            return None
        self._healthy_since = None
        if self._unhealthy_since is None:
            self._unhealthy_since = now
        if now - self._unhealthy_since > self._rejoin_timeout:
            return "not_subscribed"
        return None

    async def _probe(self, now: float) -> str | None:
        # The library ignores heartbeat replies (it sends them with ref null), so liveness is a
        # websocket ping of our own: a half-open or stalled socket answers nothing.
        ws = connection(self._handle.client)
        if ws is not self._ws:  # a new socket (the library reconnected): start the clock afresh
            self._ws, self._pong, self._last_reply, self._last_ping = ws, None, now, -math.inf
        if ws is None:
            self.stalled = False
            return None
        pong = self._pong
        if pong is not None and pong.done():
            self._pong = None
            if not pong.cancelled() and pong.exception() is None:
                self._last_reply = now
        # A pong waits behind every unread frame: while the reader is busy with a backlog, its
        # callbacks are the proof of life; only silence on both counts is a stall.
        last_sign = max(self._last_reply, self._activity())
        self.stalled = now - last_sign > self._stall_timeout
        if self.stalled:
            return "stalled"
        if self._pong is None and now - self._last_ping >= self._ping_interval:
            self._last_ping = now
            try:
                # ping() waits for the write buffer to drain, which a dead peer never does.
                async with asyncio.timeout(self._ping_interval):
                    self._pong = await ws.ping()
            except Exception:  # noqa: S110 - the stall clock keeps running; it decides
                pass
        return None
