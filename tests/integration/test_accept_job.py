"""The `accepted` job (busy after accept) is written only when another call rings to either
participant (issue 14, migration 20261204000100), and that check cannot miss a call: a pickup
that runs while the accept is uncommitted waits for it and ends its call busy. And a
`completed` end leaves the worker nothing to do (so its wake-up is not swept)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import asyncpg
import pytest

from orchestrator.adapters.postgres.listen_source import ListenNotifySource
from orchestrator.adapters.postgres.store import PostgresStore
from orchestrator.domain.model import ENDS_WITHOUT_WORK, EndReason
from orchestrator.domain.pickup import End, decide_pickup
from orchestrator.domain.work import Job
from orchestrator.ports import Wakeup
from tests.support.db import add_device, as_user, client_update, create_user, insert_call
from tests.support.wait import wait_for


async def _kinds(conn: asyncpg.Connection, call_id: uuid.UUID) -> set[str]:
    rows = await conn.fetch("select kind from orchestrator.jobs where call_id = $1", call_id)
    return {r["kind"] for r in rows}


async def _pair(db: asyncpg.Connection) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    caller, callee = await create_user(db), await create_user(db)
    await add_device(db, callee)
    return caller, callee, await insert_call(db, caller, callee)


async def test_an_accept_with_no_other_call_ringing_writes_no_accepted_job(
    db: asyncpg.Connection,
) -> None:
    _, callee, call_id = await _pair(db)
    await client_update(db, callee, call_id, "accepted")
    kinds = await _kinds(db, call_id)
    assert "accepted" not in kinds
    assert "max_duration" in kinds  # the call's own timer is still written


@pytest.mark.parametrize("to", ["callee", "caller"])
async def test_an_accept_with_a_call_ringing_to_a_participant_writes_the_job(
    db: asyncpg.Connection, to: str
) -> None:
    caller, callee, call_id = await _pair(db)
    third = await create_user(db)
    await insert_call(db, third, callee if to == "callee" else caller)
    await client_update(db, callee, call_id, "accepted")
    assert "accepted" in await _kinds(db, call_id)


async def test_a_call_ringing_from_a_participant_needs_no_job(db: asyncpg.Connection) -> None:
    # Only calls ringing *to* a participant end busy (orchestrator.end_busy_after_accept).
    _, callee, call_id = await _pair(db)
    await insert_call(db, callee, await create_user(db))
    await client_update(db, callee, call_id, "accepted")
    assert "accepted" not in await _kinds(db, call_id)


async def test_under_repeatable_read_the_job_is_always_written(db: asyncpg.Connection) -> None:
    _, callee, call_id = await _pair(db)
    async with db.transaction(isolation="repeatable_read"):
        await db.execute("set local role authenticated")
        await db.execute(
            "select set_config('request.jwt.claims', $1, true)",
            f'{{"role": "authenticated", "sub": "{callee}"}}',
        )
        await db.execute("update public.calls set status = 'accepted' where id = $1", call_id)
    assert "accepted" in await _kinds(db, call_id)


async def test_a_pickup_during_an_uncommitted_accept_waits_and_ends_busy(
    db: asyncpg.Connection, migrated_dsn: str
) -> None:
    """The race the job used to cover: the accept checks before the other call exists, the
    other call commits and its pickup starts before the accept commits."""
    _, callee, call_id = await _pair(db)
    accepting = await asyncpg.connect(migrated_dsn)
    pool = await asyncpg.create_pool(migrated_dsn, min_size=1, max_size=2)
    store = PostgresStore(pool, worker_id="accept-race", lease_seconds=5)
    try:
        async with as_user(accepting, callee):
            await accepting.execute(
                "update public.calls set status = 'accepted' where id = $1", call_id
            )
            # The accept holds both users' locks and saw no other call ringing.
            other = await insert_call(db, await create_user(db), callee)
            job_id = await db.fetchval(
                "select id from orchestrator.jobs where call_id = $1 and kind = 'pickup'", other
            )
            pickup = asyncio.create_task(
                store.pickup(Job(job_id, other, "pickup", 1), decide_pickup)
            )
            await wait_for(  # the pickup waits for the accept's user lock
                lambda: db.fetchval(
                    "select exists (select 1 from pg_stat_activity"
                    " where wait_event_type = 'Lock' and wait_event = 'advisory'"
                    " and datname = current_database())"
                ),
                10,
            )
            assert not pickup.done()
        result = await asyncio.wait_for(pickup, 10)
    finally:
        await accepting.close()
        await pool.close()
    assert isinstance(result.decision, End) and result.decision.reason.value == "busy"
    row = await db.fetchrow("select status, end_reason from public.calls where id = $1", other)
    assert (row["status"], row["end_reason"]) == ("ended", "busy")
    assert "accepted" not in await _kinds(db, call_id)


async def test_a_client_cannot_call_the_check(db: asyncpg.Connection) -> None:
    # It takes another user's lock, which a client may not (orchestrator.lock_user).
    caller, callee, call_id = await _pair(db)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with as_user(db, caller):
            await db.fetchval(
                "select orchestrator.others_ringing($1, $2, $3)", call_id, caller, callee
            )


@pytest.mark.parametrize("by", ["caller", "callee"])
async def test_a_completed_end_leaves_the_worker_nothing_to_do(
    db: asyncpg.Connection, by: str
) -> None:
    """The SQL side of domain.model.ENDS_WITHOUT_WORK: the worker skips such wake-ups."""
    caller, callee, call_id = await _pair(db)
    await client_update(db, callee, call_id, "accepted")
    before = await db.fetchval(
        "select count(*) from public.push_deliveries where call_id = $1", call_id
    )
    await client_update(db, caller if by == "caller" else callee, call_id, "ended", "completed")
    assert await _kinds(db, call_id) == set()
    after = await db.fetchval(
        "select count(*) from public.push_deliveries where call_id = $1", call_id
    )
    assert after == before  # the end created no push
    assert EndReason.COMPLETED in ENDS_WITHOUT_WORK


async def test_an_accept_never_waits_for_a_pickup_holding_the_user_locks(
    db: asyncpg.Connection, migrated_dsn: str
) -> None:
    """A pickup takes the user locks, then the call's row; the accept holds the row first. If
    the accept waited for the locks, the pickup of that very call would deadlock with it. It
    writes the job instead (the pickup may still see another call)."""
    _, callee, call_id = await _pair(db)
    picking = await asyncpg.connect(migrated_dsn)
    try:
        async with picking.transaction():
            await picking.fetchval("select orchestrator.lock_participants($1)", call_id)
            await asyncio.wait_for(client_update(db, callee, call_id, "accepted"), 5)
    finally:
        await picking.close()
    assert "accepted" in await _kinds(db, call_id)


async def test_the_listen_source_tells_the_engine_how_a_call_ended(
    db: asyncpg.Connection, migrated_dsn: str
) -> None:
    """The hint the engine skips on (ENDS_WITHOUT_WORK) comes from the real NOTIFY payload."""
    got: list[Wakeup] = []

    async def seen(call_id: uuid.UUID, n: int) -> bool:
        return sum(1 for w in got if w.call_id == call_id) >= n

    async def subscribed() -> bool:
        return Wakeup(None) in got  # LISTEN first, then this re-scan hint

    source = ListenNotifySource(migrated_dsn, wake_slots=0)
    task = asyncio.create_task(source.run(got.append))
    try:
        await wait_for(subscribed, 10)
        caller, callee, call_id = await _pair(db)
        await client_update(db, callee, call_id, "accepted")
        await client_update(db, caller, call_id, "ended", "completed")
        await wait_for(lambda: seen(call_id, 3), 10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    ours = [w.end_reason for w in got if w.call_id == call_id]
    assert ours == [None, None, "completed"]  # insert, accept, hang-up
