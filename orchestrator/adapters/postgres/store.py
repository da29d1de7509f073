"""PostgresStore: the CallStore port on asyncpg. Short transactions, leases, no NOTIFY."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import asyncpg

from orchestrator.adapters.postgres import rows
from orchestrator.adapters.postgres import sql_jobs as q
from orchestrator.adapters.postgres.store_deliveries import DeliveryStoreMixin
from orchestrator.domain.model import EndReason, Status
from orchestrator.domain.pickup import End, Merge, Ring, Skip
from orchestrator.domain.work import Ended, Job, JobKind, PickupResult
from orchestrator.ports import Decide

KNOWN_KINDS = [kind.value for kind in JobKind]


class PostgresStore(DeliveryStoreMixin):
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        worker_id: str,
        lease_seconds: float,
        caller_name_key: str = "full_name",
    ) -> None:
        self.pool = pool
        self.worker_id = worker_id
        self.lease = lease_seconds
        self.caller_name_key = caller_name_key

    async def claim_jobs(self, call_id: UUID | None, limit: int) -> list[Job]:
        if call_id is None:
            found = await self.pool.fetch(
                q.CLAIM_JOBS, limit, self.lease, self.worker_id, KNOWN_KINDS
            )
        else:
            found = await self.pool.fetch(
                q.CLAIM_CALL_JOBS, limit, self.lease, self.worker_id, call_id, KNOWN_KINDS
            )
        return sorted((rows.job(r) for r in found), key=lambda j: j.id)

    async def finish_jobs(self, job_ids: list[int]) -> None:
        if job_ids:
            await self.pool.execute(q.FINISH_JOBS, job_ids)

    async def retry_job(self, job_id: int, error: str, delay: float) -> None:
        await self.pool.execute(q.RETRY_JOB, job_id, error[:500], delay)

    async def release(self, job_ids: list[int], delivery_ids: list[int]) -> None:
        if job_ids:
            await self.pool.execute(q.RELEASE_JOBS, job_ids, self.worker_id)
        if delivery_ids:
            await self._release_deliveries(delivery_ids)

    async def renew(self, job_ids: list[int], delivery_ids: list[int]) -> None:
        if job_ids:
            await self.pool.execute(q.RENEW_JOBS, job_ids, self.lease, self.worker_id)
        if delivery_ids:
            await self._renew_deliveries(delivery_ids)

    async def pickup(self, job: Job, decide: Decide) -> PickupResult:
        # Four round trips for the common ring: begin, facts (locks included), the rings with
        # the job's deletion, commit.
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(q.PICKUP_FACTS, job.call_id)
            if row is None:
                await conn.execute(q.FINISH_JOBS, [job.id])
                return PickupResult(Skip(), [], [])
            decision = decide(rows.facts(row))
            if isinstance(decision, Ring):
                deliveries = await self._create_rings(conn, job.call_id, job.id)
                return PickupResult(decision, [], deliveries)
            ended: list[Ended] = []
            if isinstance(decision, End):
                ended += await self._end_ringing(
                    conn, job.call_id, decision.reason, decision.detail
                )
            elif isinstance(decision, Merge):
                ended += await self._end_ringing(
                    conn, decision.loser, EndReason.GLARE, {"merged_into": str(decision.survivor)}
                )
                await conn.fetchval(
                    q.ACCEPT_SURVIVOR,
                    decision.survivor,
                    rows.detail_json(decision.survivor, {"glare_with": str(decision.loser)}),
                )
            await conn.execute(q.FINISH_JOBS, [job.id])
        return PickupResult(decision, ended, [])

    async def _end_ringing(
        self, conn: asyncpg.Connection, call_id: UUID, reason: EndReason, detail: dict[str, Any]
    ) -> list[Ended]:
        done = await conn.fetchval(
            q.END_RINGING, call_id, reason.value, rows.detail_json(call_id, detail)
        )
        return [Ended(call_id, reason, Status.RINGING, None, detail)] if done else []

    async def expire_rings(self, jobs: list[Job]) -> list[Ended]:
        ids = [j.id for j in jobs]
        async with self.pool.acquire() as conn, conn.transaction():
            found = await conn.fetch(q.EXPIRE_RINGS, [j.call_id for j in jobs])
            await conn.execute(q.DROP_SETTLED_TIMERS, ids)
            await conn.execute(q.RELEASE_JOBS, ids, self.worker_id)
        return [rows.ended(r, EndReason.MISSED, Status.RINGING) for r in found]

    async def expire_accepted(self, jobs: list[Job]) -> list[Ended]:
        ids = [j.id for j in jobs]
        async with self.pool.acquire() as conn, conn.transaction():
            found = await conn.fetch(q.EXPIRE_ACCEPTED, ids)
            await conn.execute(q.DROP_SETTLED_TIMERS, ids)
            await conn.execute(q.RELEASE_JOBS, ids, self.worker_id)
        return [rows.ended(r, EndReason.MAX_DURATION, Status.ACCEPTED) for r in found]

    async def expire_presence(self, jobs: list[Job]) -> list[Ended]:
        async with self.pool.acquire() as conn, conn.transaction():
            found = await conn.fetch(q.FIRE_PRESENCE, [j.id for j in jobs])
        return [
            rows.ended(r, EndReason(r["end_reason"]), Status.ACCEPTED, json.loads(r["detail"]))
            for r in found
        ]

    async def end_busy_after_accept(self, job: Job) -> list[Ended]:
        busy = {"reason": "callee_in_call", "call": str(job.call_id)}
        # One round trip: the function locks, ends and finishes the job in one transaction.
        found = await self.pool.fetch(
            q.END_BUSY_AFTER_ACCEPT, job.call_id, job.id, json.dumps(busy)
        )
        return [
            Ended(
                r["id"],
                EndReason(r["end_reason"]),
                Status.RINGING,
                None,
                {"reason": "blocked"} if r["blocked"] else busy,
            )
            for r in found
        ]

    async def end_call(
        self, call_id: UUID, reason: EndReason, detail: dict[str, object]
    ) -> Ended | None:
        row = await self.pool.fetchrow(
            q.END_CALL, call_id, reason.value, rows.detail_json(call_id, detail)
        )
        if row is None:
            return None
        return Ended(call_id, reason, row["from_status"], None, dict(detail))

    async def seconds_until_due(self) -> float | None:
        value = await self.pool.fetchval(q.SECONDS_UNTIL_DUE)
        return None if value is None else float(value)

    async def queue_stats(self) -> tuple[int, float]:
        row = await self.pool.fetchrow(q.QUEUE_STATS)
        return int(row["depth"]), float(row["age"])

    async def ping(self) -> bool:
        try:
            return bool(await self.pool.fetchval("select true", timeout=2))
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
