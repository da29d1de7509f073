"""Presence end to end: a real worker, the real token server over HTTP for NCS, heartbeats as
clients send them, real PostgreSQL; a 3 s timeout (written to the database, as `migrate` does
from PRESENCE_TIMEOUT_SECONDS) and real worker processes for kill -9."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import pytest

from orchestrator.adapters.postgres.pool import create_pool
from orchestrator.worker import WorkerHooks, run_worker
from tests.support.db import add_device, as_user, create_user
from tests.support.presence import (
    NCS_SECRET,
    Call,
    Ncs,
    accepted_call,
    audit,
    beat,
    ncs_server,
    ncs_settings,
    notice,
    set_presence,
    sign,
)
from tests.support.processes import WorkerProcess
from tests.support.services import free_port
from tests.support.wait import wait_for
from tests.support.worker import running_worker, worker_settings

pytestmark = pytest.mark.postgres
TIMEOUT = 3


@pytest.fixture
async def conn(fresh_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(fresh_dsn)
    await set_presence(connection, "none", TIMEOUT)  # the worker's PRESENCE_SOURCE turns it on
    yield connection
    await connection.close()


@pytest.fixture
async def ncs(fresh_dsn: str, conn: asyncpg.Connection) -> AsyncIterator[Ncs]:
    pool = await create_pool(fresh_dsn, size=4, name="test-ncs")
    try:
        async with ncs_server(ncs_settings(fresh_dsn), pool) as running:
            yield running
    finally:
        await pool.close()


async def ended(conn: asyncpg.Connection, call: Call, within: float) -> asyncpg.Record:
    async def done() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await conn.fetchrow(
            "select end_reason, ended_at, accepted_at, ended_by from public.calls"
            " where id = $1 and status = 'ended'",
            call.id,
        )
        return row

    row: asyncpg.Record = await wait_for(done, within)
    return row


async def status(conn: asyncpg.Connection, call: Call) -> str:
    value: str = await conn.fetchval("select status from public.calls where id = $1", call.id)
    return value


async def noticed_at(conn: asyncpg.Connection, call: Call, event_type: int) -> object:
    return await conn.fetchval(
        "select min(received_at) from orchestrator.ncs_notices where call_id = $1"
        " and event_type = $2",
        call.id,
        event_type,
    )


def seconds(later: object, earlier: object) -> float:
    return (later - earlier).total_seconds()  # type: ignore[operator]


async def call_ended_detail(conn: asyncpg.Connection, call: Call) -> dict[str, object]:
    [(_, _, detail)] = await audit(conn, call.id, "call_ended")
    result: dict[str, object] = detail
    return result


async def test_both_leave_with_reason_2_is_connection_lost_on_time(
    fresh_dsn: str, conn: asyncpg.Connection, ncs: Ncs
) -> None:
    async with running_worker(fresh_dsn, PRESENCE_SOURCE="agora"):
        call = await accepted_call(conn)
        await ncs.send(notice(103, call.id, 1))
        await ncs.send(notice(103, call.id, 2))
        await ncs.send(notice(104, call.id, 1, reason=2))
        await ncs.send(notice(104, call.id, 2, reason=2))
        row = await ended(conn, call, TIMEOUT + 3)
    assert row["end_reason"] == "connection_lost"
    after_leave = seconds(row["ended_at"], await noticed_at(conn, call, 104))
    assert TIMEOUT <= after_leave <= TIMEOUT + 1, after_leave
    assert row["ended_by"] is None
    assert (await call_ended_detail(conn, call))["by"] == "presence"
    events = [(e[0], e[2]["uid"]) for e in await audit(conn, call.id, "participant_joined",
                                                      "participant_left")]  # fmt: skip
    assert sorted(events) == [("participant_joined", 1), ("participant_joined", 2),
                              ("participant_left", 1), ("participant_left", 2)]  # fmt: skip


async def test_the_absent_one_quit_with_reason_1_is_completed_by_presence(
    fresh_dsn: str, conn: asyncpg.Connection, ncs: Ncs
) -> None:
    async with running_worker(fresh_dsn, PRESENCE_SOURCE="agora"):
        call = await accepted_call(conn)
        await ncs.send(notice(103, call.id, 1))
        await ncs.send(notice(103, call.id, 2))
        await ncs.send(notice(104, call.id, 1, reason=1))  # the caller's app quit the channel
        row = await ended(conn, call, TIMEOUT + 3)
    assert row["end_reason"] == "completed"
    assert await call_ended_detail(conn, call) == {"by": "presence", "uid": 1,
                                                   "absent_seconds": TIMEOUT}  # fmt: skip
    [(_, _, left)] = await audit(conn, call.id, "participant_left")
    assert left == {"uid": 1, "source": "agora", "platform": 1, "reason": 1}


async def test_leaving_and_rejoining_within_the_timeout_keeps_the_call(
    fresh_dsn: str, conn: asyncpg.Connection, ncs: Ncs
) -> None:
    async with running_worker(fresh_dsn, PRESENCE_SOURCE="agora"):
        call = await accepted_call(conn)
        await ncs.send(notice(103, call.id, 1))
        await ncs.send(notice(103, call.id, 2))
        await ncs.send(notice(104, call.id, 2, reason=2))  # network drop ...
        await ncs.send(notice(103, call.id, 2))  # ... and back
        left = await noticed_at(conn, call, 104)
        # Past the moment the timer would have fired: the worker looked, and kept the call.
        await wait_for(
            lambda: conn.fetchval(
                "select now() > $1::timestamptz + make_interval(secs => $2 + 1.5)", left, TIMEOUT
            ),
            TIMEOUT + 4,
        )
        assert await status(conn, call) == "accepted"
        await ncs.send(notice(104, call.id, 2, reason=2))
        row = await ended(conn, call, TIMEOUT + 3)
    assert row["end_reason"] == "connection_lost"


async def test_nobody_ever_joins_counts_from_accepted_at(
    fresh_dsn: str, conn: asyncpg.Connection
) -> None:
    async with running_worker(fresh_dsn, PRESENCE_SOURCE="agora"):
        call = await accepted_call(conn)
        row = await ended(conn, call, TIMEOUT + 3)
    assert row["end_reason"] == "connection_lost"
    assert TIMEOUT <= seconds(row["ended_at"], row["accepted_at"]) <= TIMEOUT + 1


async def test_heartbeats_keep_a_call_alive_and_their_absence_ends_it(
    fresh_dsn: str, conn: asyncpg.Connection
) -> None:
    async with running_worker(fresh_dsn, PRESENCE_SOURCE="heartbeat"):
        call = await accepted_call(conn)
        for _ in range(6):  # 6 s, twice the timeout, beating every timeout / 3
            assert (await beat(conn, call.caller, call.id))["status"] == "accepted"
            assert (await beat(conn, call.callee, call.id))["status"] == "accepted"
            await asyncio.sleep(TIMEOUT / 3)  # the app's beat interval, not a synchronisation
        # The caller's app dies; the callee keeps beating and learns the call ended.
        reply: dict[str, object] = {}

        async def callee_sees_end() -> bool:
            nonlocal reply
            reply = await beat(conn, call.callee, call.id)
            return reply["status"] == "ended"

        await wait_for(callee_sees_end, TIMEOUT + 3, interval=TIMEOUT / 3)
        row = await ended(conn, call, 1)
    assert reply["end_reason"] == "connection_lost"
    # Counted from the caller's last recorded beat (beats within 2 s of it are not written).
    last_beat = await conn.fetchval(
        "select beat_at from orchestrator.presence where call_id = $1 and uid = 1", call.id
    )
    assert TIMEOUT <= seconds(row["ended_at"], last_beat) <= TIMEOUT + 1
    left = [(e[2]["uid"], e[2]["source"]) for e in await audit(conn, call.id, "participant_left")]
    assert left == [(1, "heartbeat")]


async def test_either_source_counts_when_both_are_on(
    fresh_dsn: str, conn: asyncpg.Connection, ncs: Ncs
) -> None:
    async with running_worker(fresh_dsn, PRESENCE_SOURCE="agora,heartbeat"):
        call = await accepted_call(conn)
        await ncs.send(notice(103, call.id, 1))  # the caller is in the channel (NCS)
        for _ in range(5):  # the callee's app only beats
            await beat(conn, call.callee, call.id)
            await asyncio.sleep(TIMEOUT / 3)
        assert await status(conn, call) == "accepted"
        await ncs.send(notice(104, call.id, 1, reason=2))  # the caller drops out of Agora ...
        for _ in range(5):  # ... but its app still beats, and so does the callee's
            await beat(conn, call.caller, call.id)
            await beat(conn, call.callee, call.id)
            await asyncio.sleep(TIMEOUT / 3)
        assert await status(conn, call) == "accepted"
        row = await ended(conn, call, TIMEOUT + 3)  # now nobody beats
    assert row["end_reason"] == "connection_lost"


async def test_after_connection_lost_both_users_call_and_are_called_at_once(
    fresh_dsn: str, conn: asyncpg.Connection
) -> None:
    async with running_worker(fresh_dsn, PRESENCE_SOURCE="heartbeat"):
        call = await accepted_call(conn)
        await add_device(conn, call.caller)
        await ended(conn, call, TIMEOUT + 3)
        third = await create_user(conn)
        await add_device(conn, third)
        # The caller may call again (no CA010/CA011) and the callee is not `busy`.
        async with as_user(conn, call.caller):
            again = await conn.fetchval(
                "insert into public.calls (callee_id) values ($1) returning id", call.callee
            )
        async with as_user(conn, call.callee):
            onward = await conn.fetchval(
                "insert into public.calls (callee_id) values ($1) returning id", third
            )
        for call_id in (again, onward):
            await wait_for(
                lambda c=call_id: conn.fetchval(
                    "select exists (select 1 from public.push_deliveries where call_id = $1"
                    " and kind = 'ring' and status = 'sent')",
                    c,
                ),
                10,
            )
    statuses = await conn.fetch(
        "select status from public.calls where id = any($1::uuid[])", [again, onward]
    )
    assert all(r["status"] != "ended" for r in statuses)


async def test_kill_9_with_a_presence_timer_pending_the_next_worker_ends_it_on_time(
    fresh_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await set_presence(conn, "none", 5)  # time for a fresh process to start
    env = {"PRESENCE_SOURCE": "heartbeat"}
    first = WorkerProcess(fresh_dsn, tmp_path / "w1.log", "presence-w1", **env)
    try:
        await wait_for(lambda: asyncio.to_thread(first.subscribed), 20)
        call = await accepted_call(conn)
        await beat(conn, call.caller, call.id)
        await wait_for(  # the first worker has done the accepted step; the timer is pending
            lambda: conn.fetchval(
                "select not exists (select 1 from orchestrator.jobs where call_id = $1"
                " and kind = 'accepted') and exists (select 1 from orchestrator.jobs"
                " where call_id = $1 and kind = 'presence' and run_at > now())",
                call.id,
            ),
            5,
        )
    finally:
        first.kill()
    second = WorkerProcess(fresh_dsn, tmp_path / "w2.log", "presence-w2", **env)
    try:
        row = await ended(conn, call, 12)
    finally:
        assert second.terminate() == 0
    assert row["end_reason"] == "connection_lost"
    # Due 5 s after the caller's only beat (the callee never beat: 5 s after accept).
    due = await conn.fetchval(
        "select least((select beat_at from orchestrator.presence where call_id = $1 and uid = 1),"
        " (select accepted_at from public.calls where id = $1)) + interval '5 seconds'",
        call.id,
    )
    assert 0 <= seconds(row["ended_at"], due) <= 1


async def test_worker_serve_answers_ncs(fresh_dsn: str, conn: asyncpg.Connection) -> None:
    port = free_port()
    settings = worker_settings(
        fresh_dsn,
        PRESENCE_SOURCE="agora",
        AGORA_NCS_SECRET=NCS_SECRET,
        AGORA_APP_ID="970CA35de60c44645bbae8a215061b33",
        AGORA_APP_CERT="5CFd2fd1755d40ecb72977518be15d3b",
        SUPABASE_URL="http://127.0.0.1:9",
        SUPABASE_JWT_SECRET="local-stack-jwt-secret-with-at-least-32-chars",
        PORT=str(port),
    )
    hooks = WorkerHooks()
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop, serve=True, hooks=hooks))
    try:
        await asyncio.wait_for(hooks.started.wait(), 15)
        call = await accepted_call(conn)
        body = notice(103, call.id, 2)
        raw = orjson.dumps(body)
        async with aiohttp.ClientSession() as http:
            reply = await http.post(
                f"http://127.0.0.1:{port}/v1/agora/events",
                data=raw,
                headers={"Agora-Signature-V2": sign(raw)},
            )
            assert (reply.status, await reply.json()) == (200, {"ok": True})
        row = await ended(conn, call, TIMEOUT + 3)  # the caller never joined
        assert row["end_reason"] == "connection_lost"
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_a_stream_of_wake_ups_for_other_calls_does_not_delay_the_timer(
    fresh_dsn: str, conn: asyncpg.Connection
) -> None:
    """Client writes wake the worker for their own call, hundreds of times a second here: a
    presence timer of another call must still fire on time (the loop once starved such timers:
    every wake-up came before the idle floor ran out, so the global scan never ran)."""
    noise = [await asyncpg.connect(fresh_dsn) for _ in range(3)]
    stop = asyncio.Event()

    async def wake_ups(link: asyncpg.Connection) -> None:
        while not stop.is_set():
            await link.execute("select pg_notify('orchestrator_calls', gen_random_uuid()::text)")
            await asyncio.sleep(0.003)  # the rate of the stream, not a synchronisation

    async with running_worker(fresh_dsn, PRESENCE_SOURCE="agora"):
        streams = [asyncio.create_task(wake_ups(link)) for link in noise]
        try:
            call = await accepted_call(conn)
            row = await ended(conn, call, TIMEOUT + 3)
        finally:
            stop.set()
            await asyncio.gather(*streams)
            for link in noise:
                await link.close()
    assert row["end_reason"] == "connection_lost"
    assert TIMEOUT <= seconds(row["ended_at"], row["accepted_at"]) <= TIMEOUT + 1
