"""An in-memory CallStore, a test double for fast engine unit tests.

What it promises is exactly what tests/integration/test_call_store_contract.py checks, the same
test functions run against it and against the PostgreSQL store: due jobs and leases, pickup
(ring every device, or end at once), idempotent end_call, outcome recording with `unreachable`
when every ring failed, retries, release. Anything else here (queue_stats, the brake's
quarantine, the triggers' stop/missed rows, glare) is a convenience of the double, not a
semantic: the PostgreSQL store is the authority and the integration tests prove it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from orchestrator.domain.model import EndReason, Platform, PushKind, Status
from orchestrator.domain.pickup import End, Merge, PickupFacts, Ring
from orchestrator.domain.push import PushMessage
from orchestrator.domain.work import (
    ClaimedDelivery,
    DeliveryOutcome,
    Ended,
    Job,
    JobKind,
    OutcomeStatus,
    PickupResult,
    RecordResult,
)
from orchestrator.ports import Decide


@dataclass
class MemCall:
    caller: UUID
    callee: UUID
    status: Status = Status.RINGING
    end_reason: EndReason | None = None
    created: float = 0.0
    deadline: float = 0.0
    version: int = 1
    id: UUID = field(default_factory=uuid4)


@dataclass
class MemDevice:
    user: UUID
    platform: Platform
    token: str
    id: UUID = field(default_factory=uuid4)
    disabled: bool = False


@dataclass
class MemDelivery:
    id: int
    call: UUID
    device: UUID
    kind: PushKind
    status: str = "pending"
    attempts: int = 0
    due: float = 0.0
    leased_until: float = 0.0
    error: str | None = None


class MemoryStore:
    def __init__(self, now: Callable[[], float] = time.monotonic, lease: float = 5.0) -> None:
        self.now, self.lease = now, lease
        self.calls: dict[UUID, MemCall] = {}
        self.devices: list[MemDevice] = []
        self.jobs: dict[int, tuple[Job, float, float]] = {}  # id -> (job, run_at, leased_until)
        self.deliveries: dict[int, MemDelivery] = {}
        self._ids = itertools.count(1)

    # --- what a client does ------------------------------------------------------------
    def insert_call(self, caller: UUID, callee: UUID, ring_timeout: float = 45) -> UUID:
        call = MemCall(caller, callee, created=self.now(), deadline=self.now() + ring_timeout)
        self.calls[call.id] = call
        self._job(call.id, JobKind.PICKUP, self.now())
        self._job(call.id, JobKind.RING_TIMEOUT, call.deadline)
        return call.id

    def _job(self, call_id: UUID, kind: JobKind, run_at: float) -> None:
        job_id = next(self._ids)
        self.jobs[job_id] = (Job(job_id, call_id, kind.value, 0), run_at, 0.0)

    def _end(self, call: MemCall, reason: EndReason) -> Ended:
        was = call.status
        call.status, call.end_reason, call.version = Status.ENDED, reason, call.version + 1
        self.jobs = {k: v for k, v in self.jobs.items() if v[0].call_id != call.id}
        for d in self.deliveries.values():
            if d.call == call.id and d.kind is PushKind.RING and d.status == "pending":
                d.status, d.error = "failed", "call_ended"
        if reason in (EndReason.MISSED, EndReason.CANCELLED):
            for device in self._devices(call.callee):
                self._delivery(call.id, device, PushKind.MISSED)
        return Ended(call.id, reason, was.value)

    def _devices(self, user: UUID) -> list[MemDevice]:
        return [d for d in self.devices if d.user == user and not d.disabled]

    def _delivery(self, call: UUID, device: MemDevice, kind: PushKind) -> MemDelivery:
        delivery = MemDelivery(next(self._ids), call, device.id, kind, due=self.now())
        self.deliveries[delivery.id] = delivery
        return delivery

    # --- the CallStore port ------------------------------------------------------------
    async def claim_jobs(self, call_id: UUID | None, limit: int) -> list[Job]:
        now, claimed = self.now(), list[Job]()
        for job_id, (job, run_at, leased) in sorted(self.jobs.items(), key=lambda i: i[1][1]):
            if run_at <= now and leased <= now and call_id in (None, job.call_id):
                taken = replace(job, attempts=job.attempts + 1)
                self.jobs[job_id] = (taken, run_at, now + self.lease)
                claimed.append(taken)
            if len(claimed) == limit:
                break
        return claimed

    async def finish_jobs(self, job_ids: list[int]) -> None:
        for job_id in job_ids:
            self.jobs.pop(job_id, None)

    async def retry_job(self, job_id: int, error: str, delay: float) -> None:
        if job_id in self.jobs:
            job = self.jobs[job_id][0]
            self.jobs[job_id] = (job, self.now() + delay, 0.0)

    async def release(self, job_ids: list[int], delivery_ids: list[int]) -> None:
        for job_id in job_ids:
            if job_id in self.jobs:
                job, run_at, _ = self.jobs[job_id]
                self.jobs[job_id] = (job, run_at, 0.0)
        for delivery_id in delivery_ids:
            self.deliveries[delivery_id].leased_until = 0.0

    async def renew(self, job_ids: list[int], delivery_ids: list[int]) -> None:
        for delivery_id in delivery_ids:
            self.deliveries[delivery_id].leased_until = self.now() + self.lease

    async def pickup(self, job: Job, decide: Decide) -> PickupResult:
        call = self.calls[job.call_id]
        busy = any(
            c.status is Status.ACCEPTED and call.callee in (c.caller, c.callee)
            for c in self.calls.values()
        )
        base = datetime(2026, 1, 1, tzinfo=UTC)
        facts = PickupFacts(
            call.id,
            call.status,
            base + timedelta(seconds=call.created),
            call.caller,
            call.callee,
            call.deadline <= self.now(),
            None,
            busy,
            False,
            len(self._devices(call.callee)),
        )
        decision, ended, rings = decide(facts), [], []
        if isinstance(decision, End):
            ended.append(self._end(call, decision.reason))
        elif isinstance(decision, Ring):
            for device in self._devices(call.callee):
                delivery = self._delivery(call.id, device, PushKind.RING)
                delivery.attempts, delivery.leased_until = 1, self.now() + self.lease
                rings.append(self._claimed(delivery))
        elif isinstance(decision, Merge):  # pragma: no cover - glare is tested on PostgreSQL
            ended.append(self._end(self.calls[decision.loser], EndReason.GLARE))
        await self.finish_jobs([job.id])
        return PickupResult(decision, ended, rings)

    async def expire_rings(self, jobs: list[Job]) -> list[Ended]:
        ended = []
        for job in jobs:
            call = self.calls[job.call_id]
            if call.status is Status.RINGING and call.deadline <= self.now():
                ended.append(
                    replace(self._end(call, EndReason.MISSED), lateness=self.now() - call.deadline)
                )
        await self.finish_jobs([j.id for j in jobs])
        return ended

    async def expire_accepted(self, jobs: list[Job]) -> list[Ended]:
        await self.finish_jobs([j.id for j in jobs])
        return []

    async def expire_presence(self, jobs: list[Job]) -> list[Ended]:
        await self.finish_jobs([j.id for j in jobs])  # presence is decided in SQL only
        return []

    async def end_busy_after_accept(self, job: Job) -> list[Ended]:
        await self.finish_jobs([job.id])
        return []

    async def end_call(
        self, call_id: UUID, reason: EndReason, detail: dict[str, object]
    ) -> Ended | None:
        call = self.calls[call_id]
        return None if call.status is Status.ENDED else self._end(call, reason)

    def _claimed(self, d: MemDelivery) -> ClaimedDelivery:
        call = self.calls[d.call]
        device = next(x for x in self.devices if x.id == d.device)
        deadline = call.deadline if d.kind is PushKind.RING else self.now() + 60
        void = (
            "call_ended"
            if d.kind is PushKind.RING and call.status is not Status.RINGING
            else ("device_disabled" if device.disabled else None)
        )
        message = PushMessage(
            d.id,
            call.id,
            d.kind,
            call.version,
            datetime.now(UTC),
            call.caller,
            "caller",
            True,
            device.platform,
            device.token,
            device.token,
            None,
            call.end_reason,
        )
        return ClaimedDelivery(
            message,
            d.attempts,
            device.platform.value,
            deadline - self.now(),
            void,
            self.now() - call.created,
        )

    async def claim_deliveries(self, call_id: UUID | None, limit: int) -> list[ClaimedDelivery]:
        now, claimed = self.now(), list[ClaimedDelivery]()
        for d in self.deliveries.values():
            if (
                d.status == "pending"
                and d.due <= now
                and d.leased_until <= now
                and call_id in (None, d.call)
                and len(claimed) < limit
            ):
                d.attempts, d.leased_until = d.attempts + 1, now + self.lease
                claimed.append(self._claimed(d))
        return claimed

    async def record_outcomes(self, outcomes: list[DeliveryOutcome]) -> RecordResult:
        touched = set()
        for o in outcomes:
            d = self.deliveries[o.delivery_id]
            d.leased_until = 0.0
            if o.status is OutcomeStatus.RETRY:
                d.due, d.error = self.now() + o.retry_in, o.error
                continue
            d.status, d.error = o.status.value, o.error
            if o.status is OutcomeStatus.PRUNED:
                next(x for x in self.devices if x.id == d.device).disabled = True
            touched.add(d.call)
        ended = []
        for call_id in touched:
            call = self.calls[call_id]
            rings = [
                d for d in self.deliveries.values() if d.call == call_id and d.kind is PushKind.RING
            ]
            if (
                call.status is Status.RINGING
                and rings
                and all(d.status in ("failed", "pruned") for d in rings)
            ):
                ended.append(self._end(call, EndReason.UNREACHABLE))
        return RecordResult(ended, [])

    async def settle_prunes(self, prune: list[int], braked: list[int]) -> None:
        for delivery_id in prune:
            delivery = self.deliveries[delivery_id]
            delivery.status = "pruned"
            next(x for x in self.devices if x.id == delivery.device).disabled = True
        for delivery_id in braked:
            delivery = self.deliveries[delivery_id]
            delivery.error = f"{delivery.error} (prune braked)"

    async def seconds_until_due(self) -> float | None:
        times = [run_at for _, run_at, _ in self.jobs.values()]
        times += [d.due for d in self.deliveries.values() if d.status == "pending"]
        return min(times) - self.now() if times else None

    async def queue_stats(self) -> tuple[int, float]:
        return 0, 0.0

    async def ping(self) -> bool:
        return True
