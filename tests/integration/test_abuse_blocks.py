"""A block leaks nothing (issue 10): no `missed` push to the blocker, whatever the timing; no
`busy` that tells the blocked caller the blocker is in a call; no glare merge across a block.
Real PostgreSQL, the real store and (where it says so) the real worker."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from orchestrator.adapters.postgres.store import PostgresStore
from orchestrator.domain.pickup import Merge, decide_pickup
from orchestrator.domain.work import Job
from tests.support.db import add_device, client_update, create_user, insert_call
from tests.support.wait import wait_for
from tests.support.worker import running_worker

DELAYS_MS = [0, 1, 10, 50]


async def pair(conn: asyncpg.Connection, *, block: bool) -> tuple[uuid.UUID, uuid.UUID]:
    """(caller, callee); the callee has an Android and an iOS device and maybe blocks the caller."""
    caller, callee = await create_user(conn, name="Mallory"), await create_user(conn)
    await add_device(conn, callee, "android")
    await add_device(conn, callee, "ios")
    if block:
        await conn.execute(
            "insert into public.call_blocks (blocker_id, blocked_id) values ($1, $2)",
            callee,
            caller,
        )
    return caller, callee


async def insert_then_cancel(
    conn: asyncpg.Connection, caller: uuid.UUID, callee: uuid.UUID, ms: int
) -> uuid.UUID:
    call_id = await insert_call(conn, caller, callee)
    await asyncio.sleep(ms / 1000)  # the attacker's timing, not a synchronisation
    try:
        await client_update(conn, caller, call_id, "ended", "cancelled")
    except asyncpg.PostgresError as exc:  # the worker ended it first (unreachable)
        assert exc.sqlstate == "CA003", exc
    return call_id


async def missed_rows(conn: asyncpg.Connection, call_id: uuid.UUID) -> int:
    count: int = await conn.fetchval(
        "select count(*) from public.push_deliveries where call_id = $1 and kind = 'missed'",
        call_id,
    )
    return count


@pytest.mark.parametrize("ms", DELAYS_MS)
async def test_insert_then_cancel_never_gives_the_blocker_a_missed_push_without_worker(
    db: asyncpg.Connection, ms: int
) -> None:
    caller, callee = await pair(db, block=True)
    call_id = await insert_then_cancel(db, caller, callee, ms)
    assert await missed_rows(db, call_id) == 0
    # The control: without the block the same cancel notifies both devices.
    other, victim = await pair(db, block=False)
    assert await missed_rows(db, await insert_then_cancel(db, other, victim, ms)) == 2


async def test_insert_then_cancel_never_gives_the_blocker_a_missed_push_with_a_worker(
    fresh_dsn: str,
) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    try:
        async with running_worker(fresh_dsn) as worker:
            calls = []
            for ms in DELAYS_MS:
                caller, callee = await pair(conn, block=True)
                calls.append(await insert_then_cancel(conn, caller, callee, ms))
            control_caller, control_callee = await pair(conn, block=False)
            control = await insert_then_cancel(conn, control_caller, control_callee, 0)

            async def settled() -> bool:
                left = await conn.fetchval(
                    "select count(*) from public.push_deliveries"
                    " where call_id = $1 and status = 'pending'",
                    control,
                )
                return left == 0 and await missed_rows(conn, control) == 2

            await wait_for(settled, timeout=10)
            for call_id in calls:
                assert await missed_rows(conn, call_id) == 0
                reason = await conn.fetchval(
                    "select end_reason from public.calls where id = $1", call_id
                )
                assert reason in ("cancelled", "unreachable")
            sent = {(m.call_id, m.kind.value) for m in worker.provider.messages}
            assert not any(call_id in calls for call_id, _ in sent if _ == "missed")
            assert (control, "missed") in sent
    finally:
        await conn.close()


async def test_a_blocked_caller_never_hears_busy(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    try:
        blocked, blocker = await pair(conn, block=True)
        friend = await create_user(conn)
        # The blocker is in an accepted call with a friend.
        busy_call = await insert_call(conn, friend, blocker)
        await client_update(conn, blocker, busy_call, "accepted")
        async with running_worker(fresh_dsn):
            call_id = await insert_call(conn, blocked, blocker)

            async def ended() -> bool:
                status = await conn.fetchval(
                    "select status from public.calls where id = $1", call_id
                )
                return status == "ended"

            await wait_for(ended, timeout=10)
        reason = await conn.fetchval("select end_reason from public.calls where id = $1", call_id)
        assert reason == "unreachable"  # the first release said `busy`
        # The control: an unblocked caller does hear busy.
        other = await create_user(conn)
        async with running_worker(fresh_dsn):
            control = await insert_call(conn, other, blocker)

            async def control_ended() -> bool:
                status = await conn.fetchval(
                    "select status from public.calls where id = $1", control
                )
                return status == "ended"

            await wait_for(control_ended, timeout=10)
        assert (
            await conn.fetchval("select end_reason from public.calls where id = $1", control)
            == "busy"
        )
    finally:
        await conn.close()


async def store_for(dsn: str) -> tuple[asyncpg.Pool, PostgresStore]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=3)
    return pool, PostgresStore(pool, worker_id="test", lease_seconds=5)


async def job(conn: asyncpg.Connection, call_id: uuid.UUID, kind: str) -> Job:
    job_id = await conn.fetchval(
        "select id from orchestrator.jobs where call_id = $1 and kind = $2", call_id, kind
    )
    return Job(job_id, call_id, kind, 1)


async def test_accepting_another_call_ends_a_blocked_callers_ringing_call_unreachable(
    db: asyncpg.Connection, migrated_dsn: str
) -> None:
    blocked, blocker = await pair(db, block=True)
    friend, stranger = await create_user(db), await create_user(db)
    waiting = await insert_call(db, blocked, blocker)  # not picked up yet (no worker)
    other = await insert_call(db, stranger, blocker)
    accepted = await insert_call(db, friend, blocker)
    await client_update(db, blocker, accepted, "accepted")
    pool, store = await store_for(migrated_dsn)
    try:
        ended = await store.end_busy_after_accept(await job(db, accepted, "accepted"))
    finally:
        await pool.close()
    reasons = dict(
        await db.fetch(
            "select id, end_reason from public.calls where id = any($1::uuid[])", [waiting, other]
        )
    )
    assert reasons == {waiting: "unreachable", other: "busy"}
    assert {(e.call_id, e.end_reason.value) for e in ended} == {
        (waiting, "unreachable"),
        (other, "busy"),
    }
    detail = await db.fetchval(
        "select detail from public.call_audit where call_id = $1 and event = 'call_ended'", waiting
    )
    assert '"blocked"' in detail


@pytest.mark.parametrize("first", ["blocker", "blocked"])
async def test_a_blocker_and_the_blocked_calling_each_other_do_not_merge(
    db: asyncpg.Connection, migrated_dsn: str, first: str
) -> None:
    blocked, blocker = await pair(db, block=True)
    await add_device(db, blocked, "android")
    from_blocker = await insert_call(db, blocker, blocked)
    from_blocked = await insert_call(db, blocked, blocker)
    order = [from_blocker, from_blocked] if first == "blocker" else [from_blocked, from_blocker]
    pool, store = await store_for(migrated_dsn)
    try:
        decisions = [await store.pickup(await job(db, c, "pickup"), decide_pickup) for c in order]
    finally:
        await pool.close()
    assert not any(isinstance(r.decision, Merge) for r in decisions)
    rows = dict(
        await db.fetch(
            "select id, coalesce(end_reason, status) from public.calls where id = any($1::uuid[])",
            order,
        )
    )
    # The blocker's own call rings; the blocked caller's call is unreachable. Nothing merged.
    assert rows == {from_blocker: "ringing", from_blocked: "unreachable"}
    glare = await db.fetchval(
        "select count(*) from public.call_audit where call_id = any($1::uuid[])"
        " and (end_reason = 'glare' or event = 'call_accepted')",
        order,
    )
    assert glare == 0
