"""`call_heartbeat` and the presence timer in the database (real PostgreSQL, as clients act)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.support.db import as_user, client_update, create_user
from tests.support.presence import accepted_call, audit, beat, call_row, ringing_call, set_presence

pytestmark = pytest.mark.postgres


@pytest.fixture
async def conn(fresh_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(fresh_dsn)
    await set_presence(connection, "heartbeat", 3)
    yield connection
    await connection.close()


async def presence_rows(conn: asyncpg.Connection, call_id: object) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "select uid, beat_at, xmin::text as xmin from orchestrator.presence where call_id = $1"
        " order by uid",
        call_id,
    )
    return rows


async def timer(conn: asyncpg.Connection, call_id: object) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "select run_at, (select accepted_at from public.calls where id = $1) as accepted_at"
        " from orchestrator.jobs where call_id = $1 and kind = 'presence'",
        call_id,
    )
    return row


async def test_a_stranger_gets_p0002_and_anon_may_not_call_it(conn: asyncpg.Connection) -> None:
    call = await accepted_call(conn)
    stranger = await create_user(conn)
    with pytest.raises(asyncpg.PostgresError) as caught:
        await beat(conn, stranger, call.id)
    assert caught.value.sqlstate == "P0002"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with as_user(conn, None, role="anon"):
            await conn.fetchval("select public.call_heartbeat($1)", call.id)
    assert await presence_rows(conn, call.id) == []


async def test_ringing_and_ended_calls_answer_the_state_and_write_nothing(
    conn: asyncpg.Connection,
) -> None:
    call = await ringing_call(conn)
    assert await beat(conn, call.caller, call.id) == {
        "status": "ringing",
        "end_reason": None,
        "version": 1,
    }
    assert await presence_rows(conn, call.id) == []
    assert await timer(conn, call.id) is None
    await client_update(conn, call.caller, call.id, "ended", "cancelled")
    reply = await beat(conn, call.callee, call.id)
    assert reply == {"status": "ended", "end_reason": "cancelled", "version": 2}
    assert await presence_rows(conn, call.id) == []


async def test_one_write_per_participant_per_two_seconds_and_no_version_bump(
    conn: asyncpg.Connection,
) -> None:
    call = await accepted_call(conn)
    before = await call_row(conn, call.id)
    first = await beat(conn, call.caller, call.id)
    assert first == {"status": "accepted", "end_reason": None, "version": before["version"]}
    [written] = await presence_rows(conn, call.id)
    for _ in range(5):  # an app beating far too often
        assert (await beat(conn, call.caller, call.id))["version"] == before["version"]
    [again] = await presence_rows(conn, call.id)
    assert (again["beat_at"], again["xmin"]) == (written["beat_at"], written["xmin"])  # no write
    await beat(conn, call.callee, call.id)
    assert [r["uid"] for r in await presence_rows(conn, call.id)] == [1, 2]
    after = await call_row(conn, call.id)
    assert after["version"] == before["version"]
    # One participant_joined each, never an audit row per beat.
    events = await audit(conn, call.id, "participant_joined", "participant_left")
    assert [(e[0], e[2]["uid"], e[2]["source"]) for e in events] == [
        ("participant_joined", 1, "heartbeat"),
        ("participant_joined", 2, "heartbeat"),
    ]


async def test_the_timer_starts_at_accept_moves_with_beats_and_goes_with_the_call(
    conn: asyncpg.Connection,
) -> None:
    call = await accepted_call(conn)
    started = await timer(conn, call.id)
    assert started is not None
    assert (started["run_at"] - started["accepted_at"]).total_seconds() == 3
    await beat(conn, call.caller, call.id)
    await beat(conn, call.callee, call.id)
    moved = await timer(conn, call.id)
    assert moved is not None
    beats = [r["beat_at"] for r in await presence_rows(conn, call.id)]
    assert moved["run_at"] == min(beats).replace() + (started["run_at"] - started["accepted_at"])
    await client_update(conn, call.caller, call.id, "ended", "completed")
    assert await timer(conn, call.id) is None


async def test_presence_off_means_no_timer_and_no_writes(conn: asyncpg.Connection) -> None:
    await set_presence(conn, "none", 30)
    call = await accepted_call(conn)
    assert await timer(conn, call.id) is None
    assert (await beat(conn, call.caller, call.id))["status"] == "accepted"
    assert await presence_rows(conn, call.id) == []
