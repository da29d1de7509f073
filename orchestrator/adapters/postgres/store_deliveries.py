"""The delivery half of PostgresStore: claim, create rings, record outcomes."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from orchestrator.adapters.postgres import rows
from orchestrator.adapters.postgres import sql_deliveries as q
from orchestrator.domain.model import EndReason, Status
from orchestrator.domain.work import (
    ClaimedDelivery,
    DeliveryOutcome,
    Ended,
    OutcomeStatus,
    RecordResult,
)

# Outcomes that can leave a ring failed or pruned (and its call unreachable); sent and retry
# cannot.
_FAILURES = frozenset(
    s for s in OutcomeStatus if s not in (OutcomeStatus.SENT, OutcomeStatus.RETRY)
)


def _latencies(found: list[asyncpg.Record]) -> list[float]:
    return [r["ring_latency"] for r in found if r["ring_latency"] is not None]


class DeliveryStoreMixin:
    pool: asyncpg.Pool
    worker_id: str
    lease: float
    caller_name_key: str

    async def claim_deliveries(self, call_id: UUID | None, limit: int) -> list[ClaimedDelivery]:
        if call_id is None:
            found = await self.pool.fetch(
                q.CLAIM, self.caller_name_key, self.lease, self.worker_id, limit
            )
        else:
            found = await self.pool.fetch(
                q.CLAIM_FOR_CALL, self.caller_name_key, self.lease, self.worker_id, limit, call_id
            )
        return [rows.delivery(r) for r in found]

    async def _create_rings(
        self, conn: asyncpg.Connection, call_id: UUID, job_id: int
    ) -> list[ClaimedDelivery]:
        found = await conn.fetch(
            q.CREATE_RINGS, self.caller_name_key, self.lease, self.worker_id, call_id, job_id
        )
        return [rows.delivery(r) for r in found]

    async def record_outcomes(self, outcomes: list[DeliveryOutcome]) -> RecordResult:
        if not outcomes:
            return RecordResult([], [])
        args = (
            [o.delivery_id for o in outcomes],
            [o.status.value for o in outcomes],
            [(o.error or "")[:500] or None for o in outcomes],
            [o.provider_message_id for o in outcomes],
            [o.provider for o in outcomes],
            [o.retry_in for o in outcomes],
        )
        if not any(o.status in _FAILURES for o in outcomes):
            # Nothing can fail a ring: one statement, its own transaction (one round trip,
            # not three).
            found = await self.pool.fetch(q.RECORD, *args)
            return RecordResult([], _latencies(found))
        async with self.pool.acquire() as conn, conn.transaction():
            found = await conn.fetch(q.RECORD, *args)
            failed_rings = list(
                {
                    r["call_id"]
                    for r in found
                    if r["kind"] == "ring" and r["status"] in ("failed", "pruned")
                }
            )
            ended: list[Ended] = []
            if failed_rings:
                for row in await conn.fetch(q.END_UNREACHABLE, failed_rings):
                    ended.append(
                        Ended(
                            row["id"],
                            EndReason.UNREACHABLE,
                            Status.RINGING,
                            None,
                            {"reason": "delivery_failed"},
                        )
                    )
        return RecordResult(ended, _latencies(found))

    async def settle_prunes(self, prune: list[int], braked: list[int]) -> None:
        if prune or braked:
            await self.pool.execute(q.SETTLE_PRUNES, prune, braked)

    async def _release_deliveries(self, ids: list[int]) -> None:
        await self.pool.execute(q.RELEASE, ids, self.worker_id)

    async def _renew_deliveries(self, ids: list[int]) -> None:
        await self.pool.execute(q.RENEW, ids, self.lease, self.worker_id)
