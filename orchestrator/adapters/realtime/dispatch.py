"""From the library's callbacks to wake-ups: enqueue in the reader, dispatch in our own task.

realtime runs callbacks synchronously in its reader task; an exception there kills the reader
without any notice (the socket stays open, no status callback). So the callbacks below only
check the generation and `put_nowait`, inside a try that swallows everything; a consumer task
parses, counts, logs and calls the wake sink on the event loop.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from realtime import RealtimeSubscribeStates

from orchestrator.adapters.realtime.events import is_subscribed, parse_change
from orchestrator.logs import get_logger
from orchestrator.metrics import Metrics
from orchestrator.ports import WakeSink, Wakeup

log = get_logger("orchestrator.realtime")

CHANGE, SYSTEM, STATUS = "change", "system", "status"
Item = tuple[int, str, Any, Any]  # (generation, kind, payload or state, error)


class Dispatcher:
    def __init__(self, metrics: Metrics, queue_limit: int, say: Callable[[object], str]) -> None:
        self._metrics = metrics
        self._queue_limit = queue_limit
        self._say = say  # renders values for logs without the key
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._overflow = False
        self.live: int | None = None  # the generation whose callbacks count; None: none
        self.subscribed: int | None = None  # generation of the last "Subscribed to PostgreSQL"
        self._subscribes = 0  # such messages in the live generation (>1: the library rejoined)
        self.last_activity = -math.inf  # loop time of the live client's latest callback

    def begin(self, generation: int) -> None:
        self.live, self.subscribed, self._subscribes = generation, None, 0
        self.last_activity = -math.inf

    def end(self) -> None:
        self.live = self.subscribed = None  # from here on, the old client's callbacks are void

    def callback(self, gen: int, kind: str) -> Callable[[Any], None]:
        def enqueue(payload: Any) -> None:
            try:
                if self.live != gen:
                    return  # a late callback of a torn-down client
                if kind == CHANGE and self._queue.qsize() >= self._queue_limit:
                    self._overflow = True  # collapses the excess into one re-scan
                    return
                self._queue.put_nowait((gen, kind, payload, None))
            except Exception:  # noqa: S110 - nothing may escape into the reader
                pass

        return enqueue

    def status_callback(self, gen: int) -> Callable[[RealtimeSubscribeStates, Any], None]:
        def enqueue(state: RealtimeSubscribeStates, error: Any) -> None:
            try:
                if self.live == gen:
                    self._queue.put_nowait((gen, STATUS, state, error))
            except Exception:  # noqa: S110 - nothing may escape into the reader
                pass

        return enqueue

    def reset(self) -> None:
        """Before a run: drop what a previous run left (called before the consumer starts)."""
        self._queue = asyncio.Queue()
        self._overflow = False
        self.end()

    async def run(self, wake: WakeSink) -> None:
        loop = asyncio.get_running_loop()
        while True:
            gen, kind, first, second = await self._queue.get()
            if gen == self.live:  # the reader is delivering: proof of life under a backlog
                self.last_activity = loop.time()
            try:
                if kind == CHANGE:  # accepted while its client was live: still a true hint
                    self._on_change(wake, gen, first)
                elif self.live == gen and kind == SYSTEM:
                    self._on_system(wake, gen, first)
                elif self.live == gen:
                    self._on_status(gen, first, second)
            except Exception:
                log.exception("realtime.consumer_failed", kind=kind)
            if self._overflow:
                self._overflow = False
                self._reconcile(wake, "realtime_overflow", gen)

    def _on_change(self, wake: WakeSink, gen: int, payload: Any) -> None:
        self._metrics.realtime_events.inc()
        change = parse_change(payload, datetime.now(UTC))
        if change.lag is not None:
            self._metrics.realtime_lag.observe(change.lag)
        if change.problem is None:
            self._wake(wake, change.wakeup)
            return
        # The reason only: the record may hold user ids, and nothing in it is needed here.
        log.warning(
            "realtime.malformed_event", problem=change.problem, event_type=change.event_type
        )
        self._reconcile(wake, "realtime_malformed", gen)

    def _on_system(self, wake: WakeSink, gen: int, payload: Any) -> None:
        if not is_subscribed(payload):
            message = self._say(getattr(payload, "message", ""))
            extension = getattr(payload, "extension", None)
            log.info("realtime.system_message", generation=gen, extension=extension,
                     message=message)  # fmt: skip
            return
        self._subscribes += 1
        rejoin = self._subscribes > 1
        if rejoin:
            self._metrics.reconnects.labels(dependency="realtime").inc()
        self.subscribed = gen
        log.info("realtime.subscribed", generation=gen, rejoin=rejoin)
        self._reconcile(wake, "realtime_subscribed", gen)

    def _on_status(self, gen: int, state: RealtimeSubscribeStates, error: Any) -> None:
        if state == RealtimeSubscribeStates.SUBSCRIBED:
            log.info("realtime.joined", generation=gen)  # live only at "Subscribed to PostgreSQL"
            return
        self.subscribed = None
        log.warning("realtime.channel_state", generation=gen, state=state.value,
                    error=None if error is None else self._say(error))  # fmt: skip

    def _reconcile(self, wake: WakeSink, trigger: str, gen: int) -> None:
        self._metrics.reconciles.labels(trigger=trigger).inc()
        log.info("realtime.reconcile_requested", trigger=trigger, generation=gen)
        self._wake(wake, Wakeup(None))

    @staticmethod
    def _wake(wake: WakeSink, wakeup: Wakeup) -> None:
        try:
            wake(wakeup)
        except Exception:  # the sink promises not to raise; the stream must outlive it if it does
            log.exception("realtime.wake_failed")
