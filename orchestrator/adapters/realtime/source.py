"""EVENT_SOURCE=supabase: wake-ups from Supabase Realtime postgres_changes on `public.calls`.

Realtime delivers at most once, so its events are hints, never the truth:
- every "Subscribed to PostgreSQL" (the first subscribe and every rejoin) asks the worker to
  re-scan (`Wakeup(None)`); the worker's RECONCILE_INTERVAL_SECONDS backstop covers the rest;
- callbacks only enqueue (realtime_dispatch), because an exception in one kills the reader;
- a watchdog (realtime_watchdog) rebuilds the whole client, with backoff and jitter, whenever
  the library cannot recover by itself; callbacks of a torn-down client are ignored.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from urllib.parse import quote_plus

from orchestrator.adapters.realtime.client import (
    ClientHandle,
    ClientOptions,
    build,
    dispose,
    task_failure,
)
from orchestrator.adapters.realtime.dispatch import CHANGE, SYSTEM, Dispatcher
from orchestrator.adapters.realtime.events import backoff_delay
from orchestrator.adapters.realtime.watchdog import Watchdog
from orchestrator.config import ConfigError, Settings
from orchestrator.logs import get_logger
from orchestrator.metrics import Metrics
from orchestrator.ports import WakeSink

log = get_logger("orchestrator.realtime")

LIBRARY_HEARTBEAT = 25  # realtime's DEFAULT_HEARTBEAT_INTERVAL (it never goes below 15 s)


class RealtimeEventSource:
    name = "supabase"

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        stall_timeout: float = 60.0,  # no reply to our websocket ping for this long: rebuild
        heartbeat_interval: float | None = None,  # our ping period (None: 25 s); also the
        # library's Phoenix heartbeat, which it never sends more often than every 15 s
        check_interval: float = 1.0,  # how often the watchdog looks (no I/O but the ping)
        rejoin_timeout: float = 30.0,  # not subscribed for this long: the library gave up
        join_timeout: int = 10,  # the library's join and websocket-open timeout (whole s)
        client_max_retries: int = 5,  # the library's own reconnect budget
        client_initial_backoff: float = 1.0,
        close_timeout: float = 2.0,  # polite close of a torn-down client, then abort
        stable_after: float = 30.0,  # subscribed this long: the next rebuild starts at base
        queue_limit: int = 10_000,  # beyond this, queued events collapse into one re-scan
        topic: str = "orchestrator-calls",
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not settings.supabase_url or not settings.supabase_service_role_key:
            raise ConfigError(
                "EVENT_SOURCE=supabase needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY"
            )
        self._url = settings.supabase_url.rstrip("/") + "/realtime/v1"
        self._key = settings.supabase_service_role_key
        hb = LIBRARY_HEARTBEAT if heartbeat_interval is None else math.ceil(heartbeat_interval)
        self._options = ClientOptions(
            url=self._url, key=self._key, topic=topic, hb_interval=max(1, hb),
            max_retries=client_max_retries, initial_backoff=client_initial_backoff,
            timeout=join_timeout,
        )  # fmt: skip
        self._metrics = metrics
        self._backoff = (backoff_base, backoff_max, rand)
        self._ping_interval = float(heartbeat_interval or LIBRARY_HEARTBEAT)
        self._stall_timeout, self._rejoin_timeout = stall_timeout, rejoin_timeout
        self._check_interval, self._close_timeout = check_interval, close_timeout
        self._stable_after = stable_after
        self._dispatch = Dispatcher(metrics, queue_limit, self._say)
        self._generations = 0
        self._live: ClientHandle | None = None
        self._watchdog: Watchdog | None = None

    @property
    def healthy(self) -> bool:
        live, dog = self._live, self._watchdog
        return live is not None and dog is not None and self._subscribed(live) and not dog.stalled

    async def run(self, wake: WakeSink) -> None:
        """Never returns or raises but CancelledError: outages and bugs only mean a rebuild."""
        self._dispatch.reset()
        consumer = asyncio.create_task(self._dispatch.run(wake), name="realtime-dispatch")
        attempt = 0
        try:
            while True:
                reason, stable = await self._one_generation()
                attempt = 0 if stable else attempt
                delay = backoff_delay(attempt, *self._backoff)
                attempt += 1
                log.warning(
                    "realtime.rebuild", generation=self._generations, reason=reason,
                    attempt=attempt, delay_s=round(delay, 3),
                )  # fmt: skip
                self._metrics.realtime_rebuilds.inc()
                await asyncio.sleep(delay)
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            log.info("realtime.stopped", generation=self._generations)

    async def _one_generation(self) -> tuple[str, bool]:
        """Build, connect, supervise and tear down one client: why it ended, was it stable."""
        self._generations += 1
        gen, dog, stage = self._generations, None, "build"
        self._dispatch.begin(gen)
        callback, handle = self._dispatch.callback, None
        try:
            log.info("realtime.connecting", generation=gen, url=self._url)
            handle = build(self._options, gen, callback(gen, CHANGE), callback(gen, SYSTEM))
            self._live = handle
            stage = "connect"
            await handle.client.connect()  # retries by itself (max_retries), then raises
            stage = "subscribe"
            try:  # returns on the join reply or the join timeout; the bound is for the rest
                async with asyncio.timeout(self._options.timeout * 2 + 1):
                    await handle.channel.subscribe(self._dispatch.status_callback(gen))
            except TimeoutError:
                pass  # still joining: the watchdog's rejoin_timeout decides
            stage = "supervise"
            loop = asyncio.get_running_loop()
            dog = self._watchdog = Watchdog(
                handle, lambda: self._subscribed(handle), lambda: self._dispatch.last_activity,
                loop.time(),
                stall_timeout=self._stall_timeout, ping_interval=self._ping_interval,
                rejoin_timeout=self._rejoin_timeout, check_interval=self._check_interval,
            )  # fmt: skip
            while True:
                reason = await dog.check(loop.time())
                if reason is not None:
                    break
                await asyncio.sleep(self._check_interval)
            if reason == "reader_ended":
                reason = f"reader_ended:{task_failure(handle.client)}"
            return reason, dog.longest_healthy >= self._stable_after
        except Exception as exc:  # connectivity and library errors alike: rebuild, never raise
            log.warning("realtime.client_failed", generation=gen, stage=stage, error=self._say(exc))
            return f"{stage}_failed", dog is not None and dog.longest_healthy >= self._stable_after
        finally:
            self._dispatch.end()  # first: late callbacks of this client are ignored from here
            self._live = self._watchdog = None
            if handle is not None:
                await dispose(handle, self._close_timeout)

    def _subscribed(self, handle: ClientHandle) -> bool:
        return (
            self._dispatch.subscribed == handle.generation
            and handle.channel.is_joined
            and handle.client.is_connected
        )

    def _say(self, value: object) -> str:
        """Text for a log line, without the key (an error could echo the websocket URL)."""
        text = str(value)
        if isinstance(value, BaseException):
            text = f"{type(value).__name__}: {text}"
        for secret in (self._key, quote_plus(self._key)):
            text = text.replace(secret, "[redacted]")
        return text[:300]
