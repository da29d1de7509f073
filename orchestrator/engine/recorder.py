"""Group commit of provider results: every finished send is recorded at once, batched with
whatever else finished meanwhile, so one slow push never holds back the others' marks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from orchestrator.domain.work import DeliveryOutcome, Ended, RecordResult
from orchestrator.logs import exception_fields, get_logger
from orchestrator.metrics import Metrics
from orchestrator.ports import CallStore, Clock

log = get_logger("orchestrator.push")
# Short and capped: when the database is back, this write must land before a sweep (ours or
# another worker's) sees the lapsed lease and hands the push out again.
RECORD_RETRY_FIRST = 0.05
RECORD_RETRY_MAX = 0.25


class Recorder:
    def __init__(
        self,
        store: CallStore,
        metrics: Metrics,
        on_ended: Callable[[list[Ended]], None],
        clock: Clock,
    ) -> None:
        self.store = store
        self.clock = clock
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
        # A push that went out must be marked, or it is sent again: retry until the write
        # lands (the ids stay in flight, so their leases are renewed and this worker does not
        # claim them again meanwhile). Only shutdown (cancellation) stops it.
        delay = RECORD_RETRY_FIRST
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self.store.record_outcomes(outcomes)
            except Exception as exc:
                if attempt == 1 or attempt % 20 == 0:  # visible, not one line per 250 ms
                    log.warning(
                        "push_record_retry",
                        attempt=attempt,
                        pushes=len(outcomes),
                        **exception_fields(exc),
                    )
                await self.clock.sleep(delay)
                delay = min(delay * 2, RECORD_RETRY_MAX)
