"""Running claimed jobs: pickups, ring timeouts, max durations, presence, busy-after-accept."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from uuid import UUID

from orchestrator.domain.model import EndReason
from orchestrator.domain.pickup import End, Merge, Ring, decide_pickup
from orchestrator.domain.work import ClaimedDelivery, Ended, Job, JobKind
from orchestrator.engine.settings import EngineSettings
from orchestrator.engine.transient import is_conflict
from orchestrator.logs import get_logger
from orchestrator.metrics import Metrics
from orchestrator.ports import CallStore, Clock

log = get_logger("orchestrator.jobs")
# A hook that may raise before a pickup (the demo's injected fault, tests' crash points).
PickupHook = Callable[[Job], None]


class JobRunner:
    def __init__(
        self,
        store: CallStore,
        settings: EngineSettings,
        metrics: Metrics,
        clock: Clock,
        on_ended: Callable[[list[Ended]], None],
        pickup_hook: PickupHook | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.on_ended = on_ended
        self.pickup_hook = pickup_hook
        self._limit = asyncio.Semaphore(settings.concurrency)

    async def run(self, jobs: list[Job]) -> tuple[list[ClaimedDelivery], set[UUID]]:
        """Run a batch. Returns the rings to send now and the calls whose state changed."""
        rings: list[ClaimedDelivery] = []
        touched: set[UUID] = set()
        by_kind: dict[str, list[Job]] = {}
        for job in jobs:
            by_kind.setdefault(job.kind, []).append(job)
        for kind, batch in by_kind.items():
            if kind == JobKind.RING_TIMEOUT:
                touched |= await self._guard_batch(batch, self.store.expire_rings)
            elif kind == JobKind.MAX_DURATION:
                touched |= await self._guard_batch(batch, self.store.expire_accepted)
            elif kind == JobKind.PRESENCE:
                touched |= await self._guard_batch(batch, self.store.expire_presence)
            elif kind in (JobKind.PICKUP, JobKind.ACCEPTED):
                results = await asyncio.gather(*(self._guarded(job) for job in batch))
                for job_rings, job_touched in results:
                    rings += job_rings
                    touched |= job_touched
            else:
                log.error("job_unknown_kind_dropped", kind=kind, call_id=str(batch[0].call_id))
                await self.store.finish_jobs([j.id for j in batch])
        return rings, touched

    async def _guard_batch(
        self, batch: list[Job], action: Callable[[list[Job]], object]
    ) -> set[UUID]:
        try:
            ended: list[Ended] = await action(batch)  # type: ignore[misc]
        except Exception as exc:
            for job in batch:
                await self._failed(job, exc)
            return set()
        self.on_ended(ended)
        for item in ended:
            if item.lateness is not None:
                self.metrics.timer_lateness.observe(max(item.lateness, 0.0))
        self.metrics.jobs.labels(batch[0].kind, "ok").inc(len(batch))
        return {e.call_id for e in ended}

    async def _guarded(self, job: Job) -> tuple[list[ClaimedDelivery], set[UUID]]:
        async with self._limit:
            try:
                if job.kind == JobKind.PICKUP:
                    return await self._pickup(job)
                ended = await self.store.end_busy_after_accept(job)
                self.on_ended(ended)
                self.metrics.jobs.labels(job.kind, "ok").inc()
                return [], {job.call_id} | {e.call_id for e in ended}
            except Exception as exc:
                await self._failed(job, exc)
                return [], {job.call_id}

    async def _pickup(self, job: Job) -> tuple[list[ClaimedDelivery], set[UUID]]:
        if self.pickup_hook is not None:
            self.pickup_hook(job)
        result = await self.store.pickup(job, decide_pickup)
        self.on_ended(result.ended)
        self.metrics.jobs.labels(job.kind, "ok").inc()
        decision = result.decision
        if isinstance(decision, Ring):
            log.info("call_ringing", call_id=str(job.call_id), devices=len(result.deliveries))
        elif isinstance(decision, Merge):
            log.info(
                "call_transition",
                call_id=str(decision.survivor),
                **{"from": "ringing"},
                to="accepted",
                actor="system",
                reason="glare_merge",
            )
        touched = {job.call_id} | {e.call_id for e in result.ended}
        if isinstance(decision, Merge):
            touched.add(decision.survivor)
        if isinstance(decision, End) and not result.ended:
            touched = {job.call_id}
        return result.deliveries, touched

    async def _failed(self, job: Job, exc: Exception) -> None:
        """A job that keeps failing ends its call `failed` instead of blocking it forever."""
        error = type(exc).__name__
        if is_conflict(exc):  # a lock conflict is no fault of the call: just run it again
            log.info("job_conflict", call_id=str(job.call_id), kind=job.kind, error=error)
            try:
                await self.store.retry_job(job.id, error, 0.05)
            except Exception:  # the lease expires and the job runs again anyway
                log.info("job_conflict_not_recorded", call_id=str(job.call_id))
            return
        self.metrics.jobs.labels(job.kind, "error").inc()
        log.warning(
            "job_failed",
            call_id=str(job.call_id),
            kind=job.kind,
            attempts=job.attempts,
            error=error,
            exc_info=exc,
        )
        try:
            if job.attempts >= self.settings.job_max_attempts:
                ended = await self.store.end_call(
                    job.call_id, EndReason.FAILED, {"error": error, "job": job.kind}
                )
                await self.store.finish_jobs([job.id])
                self.on_ended([ended] if ended else [])
            else:
                delay = self.settings.job_retry_base_seconds * 2 ** (job.attempts - 1)
                await self.store.retry_job(job.id, error, delay)
        except Exception as inner:  # the database is down: the lease expires and we retry
            log.error(
                "job_failure_not_recorded", call_id=str(job.call_id), error=type(inner).__name__
            )
