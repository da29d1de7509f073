"""LISTEN/NOTIFY event source: a wake-up per client change, never the source of truth."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any
from uuid import UUID

import asyncpg

from orchestrator.adapters.postgres.wake_slots import WakeSlots
from orchestrator.logs import get_logger
from orchestrator.metrics import Metrics
from orchestrator.ports import WakeSink, Wakeup

log = get_logger("orchestrator.listen")
CHANNEL = "orchestrator_calls"
COUNT_LOCK = 7339


class ListenNotifySource:
    name = "postgres"

    def __init__(
        self,
        dsn: str,
        metrics: Metrics | None = None,
        *,
        channel: str = CHANNEL,
        keepalive_seconds: float = 5.0,
        rebalance_seconds: float = 1.0,
        wake_slots: int = 64,
        backoff_base: float = 0.2,
        backoff_max: float = 10.0,
    ) -> None:
        self.dsn = dsn
        self.metrics = metrics
        self.channel = channel
        self.keepalive = keepalive_seconds
        self.rebalance_seconds = min(rebalance_seconds, keepalive_seconds)
        # Only the owner of a call's slot sweeps its wake-up (wake_slots.py); 0: no slots.
        self.slots: WakeSlots | None = WakeSlots(wake_slots) if wake_slots > 0 else None
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._healthy = False
        # One listener across all workers counts client-ended calls (each worker gets every
        # notification): the one holding this advisory lock on its LISTEN connection.
        self._counter = False

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def run(self, wake: WakeSink) -> None:
        failures = 0
        while True:
            conn: asyncpg.Connection | None = None
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self.dsn, timeout=10)
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())
                await conn.add_listener(self.channel, self._callback(wake))
                self._counter = await self._try_count_lock(conn)
                if self.slots is not None:
                    await self.slots.rebalance(conn)
                self._healthy = True
                failures = 0
                log.info("listen_subscribed", channel=self.channel)
                # LISTEN first, then scan: notifications sent while we were away are lost.
                wake(Wakeup(None))
                await self._watch(conn, lost, wake)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("listen_lost", error=type(exc).__name__)
            finally:
                self._healthy = self._counter = False
                if self.slots is not None:
                    self.slots.reset()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(2):
                            await conn.close()
            failures += 1
            if self.metrics is not None:
                self.metrics.reconnects.labels("listen").inc()
            delay = min(self.backoff_max, self.backoff_base * 2 ** min(failures, 10))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _watch(self, conn: asyncpg.Connection, lost: asyncio.Event, wake: WakeSink) -> None:
        """Return when the connection is gone (closed, or a keepalive query fails). Each
        round also rebalances the wake-up slots (the query doubles as the keepalive).

        asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for swallows a cancel that
        arrives as the awaited query completes, and this loop then outlives the shutdown."""
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.rebalance_seconds):
                    await lost.wait()
            if lost.is_set():
                return
            async with asyncio.timeout(self.keepalive):
                if self.slots is None:
                    await conn.fetchval("select 1")
                    changed = False
                else:
                    changed = await self.slots.rebalance(conn)
            if changed:
                wake(Wakeup(None))  # a slot changed hands: its missed wake-ups are due now
            if not self._counter:  # the counting listener died: take over
                self._counter = await self._try_count_lock(conn)

    @staticmethod
    async def _try_count_lock(conn: asyncpg.Connection) -> bool:
        return bool(await conn.fetchval("select pg_try_advisory_lock($1)", COUNT_LOCK))

    def _callback(self, wake: WakeSink) -> Any:
        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            text, _, end_reason = payload.partition(" ")
            try:
                call_id = UUID(text)
            except ValueError:
                wake(Wakeup(None))  # an unexpected payload still means "something changed"
                return
            reason = (end_reason or None) if self._counter else None
            if self.slots is None or self.slots.wants(call_id):
                wake(Wakeup(call_id, reason, end_reason or None))
            elif reason is not None and self.metrics is not None:
                # Another worker sweeps it; the counting listener still counts the client end.
                self.metrics.calls_ended.labels(reason).inc()

        return on_notify
