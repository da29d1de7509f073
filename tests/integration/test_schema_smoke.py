"""Smoke checks of the schema: a client call gets its jobs and audit row from the database."""

from __future__ import annotations

import asyncpg
import pytest

from tests.support.db import as_user, client_update, create_user, insert_call

pytestmark = pytest.mark.postgres


async def test_client_insert_creates_audit_and_jobs(db: asyncpg.Connection) -> None:
    caller, callee = await create_user(db), await create_user(db)
    call_id = await insert_call(db, caller, callee)
    row = await db.fetchrow("select * from public.calls where id = $1", call_id)
    assert row["status"] == "ringing" and row["version"] == 1 and row["caller_id"] == caller
    assert row["ring_deadline"] > row["created_at"]
    events = await db.fetch(
        "select event, actor, actor_id from public.call_audit where call_id = $1", call_id
    )
    assert [(e["event"], e["actor"], e["actor_id"]) for e in events] == [
        ("call_created", "caller", caller)
    ]
    jobs = await db.fetch(
        "select kind from orchestrator.jobs where call_id = $1 order by kind", call_id
    )
    assert [j["kind"] for j in jobs] == ["pickup", "ring_timeout"]


async def test_forged_caller_is_refused(db: asyncpg.Connection) -> None:
    caller, callee, other = [await create_user(db) for _ in range(3)]
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with as_user(db, caller):
            await db.execute(
                "insert into public.calls (caller_id, callee_id) values ($1, $2)", other, callee
            )


async def test_callee_accepts_then_caller_hangs_up(db: asyncpg.Connection) -> None:
    caller, callee = await create_user(db), await create_user(db)
    call_id = await insert_call(db, caller, callee)
    await client_update(db, callee, call_id, "accepted")
    await client_update(db, caller, call_id, "ended", "completed")
    row = await db.fetchrow("select * from public.calls where id = $1", call_id)
    assert (row["status"], row["end_reason"], row["ended_by"], row["version"]) == (
        "ended",
        "completed",
        caller,
        3,
    )
    events = await db.fetch(
        "select event, actor from public.call_audit where call_id = $1 order by id", call_id
    )
    assert [(e["event"], e["actor"]) for e in events] == [
        ("call_created", "caller"),
        ("call_accepted", "callee"),
        ("call_ended", "caller"),
    ]
    assert (
        await db.fetchval("select count(*) from orchestrator.jobs where call_id=$1", call_id) == 0
    )
