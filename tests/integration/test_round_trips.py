"""Round trips per worker step (issue 14): each costs the database a wake-up, a receive and a
send, so the store's hot steps are held to a fixed count. Every query the store's connections
send is logged (asyncpg's query logger), BEGIN and COMMIT included, and the step's effect is
checked too."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from orchestrator.adapters.postgres.store import PostgresStore
from orchestrator.domain.pickup import Ring, decide_pickup
from orchestrator.domain.work import DeliveryOutcome, Job, OutcomeStatus
from tests.support.db import add_device, client_update, create_user, insert_call

# asyncpg's own type introspection, once per connection and type (then cached): not a step's.
_INTROSPECTION = (
    "WITH RECURSIVE typeinfo_tree",
    "SELECT current_setting('jit')",
    "SELECT set_config('jit'",
)


class Logged:
    def __init__(self) -> None:
        self.queries: list[str] = []

    def __call__(self, record: object) -> None:
        query = " ".join(str(getattr(record, "query", "")).split())
        if query.startswith(_INTROSPECTION):
            return
        self.queries.append(query.rstrip(";").upper() if len(query) < 10 else query[:60])


@pytest.fixture
async def logged(migrated_dsn: str) -> AsyncIterator[tuple[PostgresStore, Logged]]:
    log = Logged()

    async def init(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(log)

    async def no_reset(conn: asyncpg.Connection) -> None:
        """As the product's pool (orchestrator.adapters.postgres.pool): no reset queries."""

    pool = await asyncpg.create_pool(
        migrated_dsn, min_size=1, max_size=2, init=init, reset=no_reset
    )
    try:
        yield PostgresStore(pool, worker_id="round-trips", lease_seconds=5), log
    finally:
        await pool.close()


async def _job(conn: asyncpg.Connection, call_id: uuid.UUID, kind: str) -> Job:
    job_id = await conn.fetchval(
        "select id from orchestrator.jobs where call_id = $1 and kind = $2", call_id, kind
    )
    assert job_id is not None, f"no {kind} job"
    return Job(job_id, call_id, kind, 1)


async def _ringing(db: asyncpg.Connection) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    caller, callee = await create_user(db), await create_user(db)
    await add_device(db, callee)
    return caller, callee, await insert_call(db, caller, callee)


async def test_a_pickup_that_rings_takes_four_round_trips(
    db: asyncpg.Connection, logged: tuple[PostgresStore, Logged]
) -> None:
    store, log = logged
    _, _, call_id = await _ringing(db)
    job = await _job(db, call_id, "pickup")
    log.queries.clear()
    result = await store.pickup(job, decide_pickup)
    assert isinstance(result.decision, Ring) and len(result.deliveries) == 1
    assert len(log.queries) == 4, log.queries  # begin, facts with locks, rings + job, commit
    assert log.queries[0] == "BEGIN" and log.queries[-1] == "COMMIT"
    left = await db.fetchval("select count(*) from orchestrator.jobs where id = $1", job.id)
    assert left == 0  # the pickup job went with the rings, in the same statement


async def test_the_accepted_job_takes_one_round_trip(
    db: asyncpg.Connection, logged: tuple[PostgresStore, Logged]
) -> None:
    store, log = logged
    _, callee, accepted = await _ringing(db)
    other = await insert_call(db, await create_user(db), callee)
    await client_update(db, callee, accepted, "accepted")
    job = await _job(db, accepted, "accepted")
    log.queries.clear()
    ended = await store.end_busy_after_accept(job)
    assert len(log.queries) == 1, log.queries
    assert [(e.call_id, e.end_reason.value) for e in ended] == [(other, "busy")]
    assert ended[0].detail == {"reason": "callee_in_call", "call": str(accepted)}
    detail = await db.fetchval(
        "select detail::text from public.call_audit where call_id = $1 and event = 'call_ended'",
        other,
    )
    assert '"callee_in_call"' in detail and str(accepted) in detail
    left = await db.fetchval("select count(*) from orchestrator.jobs where id = $1", job.id)
    assert left == 0


async def _claimed_ring(db: asyncpg.Connection, store: PostgresStore) -> tuple[uuid.UUID, int, str]:
    _, _, call_id = await _ringing(db)
    result = await store.pickup(await _job(db, call_id, "pickup"), decide_pickup)
    delivery = result.deliveries[0]
    return call_id, delivery.id, delivery.provider


async def test_sent_outcomes_are_recorded_in_one_round_trip(
    db: asyncpg.Connection, logged: tuple[PostgresStore, Logged]
) -> None:
    store, log = logged
    call_id, delivery_id, provider = await _claimed_ring(db, store)
    log.queries.clear()
    await store.record_outcomes(
        [DeliveryOutcome(delivery_id, call_id, OutcomeStatus.SENT, provider, None, "m-1")]
    )
    assert len(log.queries) == 1, log.queries
    status = await db.fetchval(
        "select status from public.push_deliveries where id = $1", delivery_id
    )
    assert status == "sent"


async def test_a_failed_ring_is_recorded_with_the_unreachable_end_in_one_transaction(
    db: asyncpg.Connection, logged: tuple[PostgresStore, Logged]
) -> None:
    store, log = logged
    call_id, delivery_id, provider = await _claimed_ring(db, store)
    log.queries.clear()
    result = await store.record_outcomes(
        [DeliveryOutcome(delivery_id, call_id, OutcomeStatus.FAILED, provider, "boom", None)]
    )
    assert (log.queries[0], log.queries[-1]) == ("BEGIN", "COMMIT")
    assert [(e.call_id, e.end_reason.value) for e in result.ended] == [(call_id, "unreachable")]
    row = await db.fetchrow("select status, end_reason from public.calls where id = $1", call_id)
    assert (row["status"], row["end_reason"]) == ("ended", "unreachable")
