"""Group commit of provider results: every finished send is recorded at once, batched with
whatever else finished meanwhile, so one slow push never holds back the others' marks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from orchestrator.domain.work import DeliveryOutcome, Ended, RecordResult
from orchestrator.logs import get_logger
from orchestrator.metrics import Metrics
from orchestrator.ports import CallStore

log = get_logger("orchestrator.push")
RECORD_ATTEMPTS = 5


class Recorder:
    def __init__(
        self, store: CallStore, metrics: Metrics, on_ended: Callable[[list[Ended]], None]
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.on_ended = on_ended
        self._pending: list[tuple[DeliveryOutcome, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def record(self, outcome: DeliveryOutcome) -> None:
        """Returns once the outcome is durable (raises if the database refused it for good)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((outcome, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await asyncio.shield(done)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                result = await self._write([outcome for outcome, _ in batch])
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
            for seconds in result.ring_latencies:
                self.metrics.time_to_ring.observe(seconds)
            self.on_ended(result.ended)

    async def _write(self, outcomes: list[DeliveryOutcome]) -> RecordResult:
        # A push that went out must be marked, or its lease expires and it is sent again:
        # retry through short database hiccups (the lease is renewed meanwhile).
        delay = 0.05
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                return await self.store.record_outcomes(outcomes)
            except Exception as exc:
                if attempt == RECORD_ATTEMPTS:
                    raise
                log.warning("push_record_retry", error=type(exc).__name__, attempt=attempt)
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover
