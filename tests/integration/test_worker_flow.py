"""The real worker against the real database: every pickup decision, timer and push kind."""

from __future__ import annotations

import asyncpg
import pytest

from tests.support.db import add_device, client_update, create_user, insert_call
from tests.support.wait import wait_for
from tests.support.worker import running_worker

pytestmark = pytest.mark.postgres


async def _call(conn: asyncpg.Connection, call_id: object) -> asyncpg.Record:
    return await conn.fetchrow("select * from public.calls where id = $1", call_id)


async def _ended(conn: asyncpg.Connection, call_id: object) -> asyncpg.Record | None:
    row = await _call(conn, call_id)
    return row if row["status"] == "ended" else None


async def _deliveries(conn: asyncpg.Connection, call_id: object, kind: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "select * from public.push_deliveries where call_id = $1 and kind = $2 order by id",
        call_id,
        kind,
    )


async def _timeline(conn: asyncpg.Connection, call_id: object) -> list[tuple[str, str, str | None]]:
    rows = await conn.fetch(
        "select event, actor, end_reason, detail from public.call_audit where call_id = $1"
        " order by id",
        call_id,
    )
    return [(r["event"], r["actor"], r["end_reason"]) for r in rows]


async def test_ring_accept_stop_hang_up_timeline(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    caller, callee = await create_user(conn, name="Ada"), await create_user(conn)
    android = await add_device(conn, callee, "android")
    await add_device(conn, callee, "ios")
    async with running_worker(fresh_dsn) as worker:
        call_id = await insert_call(conn, caller, callee)

        async def rings_sent() -> bool:
            rows = await _deliveries(conn, call_id, "ring")
            return len(rows) == 2 and all(r["status"] == "sent" for r in rows)

        await wait_for(rings_sent)
        rings = [m for m in worker.provider.messages if m.kind.value == "ring"]
        assert {m.platform.value for m in rings} == {"android", "ios"}
        assert all(m.caller_name == "Ada" and m.seq == 1 for m in rings)
        await client_update(conn, callee, call_id, "accepted")

        async def stop_sent() -> bool:
            rows = await _deliveries(conn, call_id, "stop")
            return len(rows) == 1 and rows[0]["status"] == "sent"

        await wait_for(stop_sent)
        assert (await _deliveries(conn, call_id, "stop"))[0]["device_id"] == android
        await client_update(conn, caller, call_id, "ended", "completed")
    assert await _timeline(conn, call_id) == [
        ("call_created", "caller", None),
        ("push_sent", "system", None),
        ("push_sent", "system", None),
        ("call_accepted", "callee", None),
        ("push_sent", "system", None),
        ("call_ended", "caller", "completed"),
    ]
    assert worker.provider.counts().most_common(1)[0][1] == 2  # two rings share (call, kind, seq)
    await conn.close()


async def test_missed_at_the_deadline_sends_missed_alerts(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    caller, callee = await create_user(conn), await create_user(conn)
    await add_device(conn, callee, "android")
    await add_device(conn, callee, "ios")
    async with running_worker(fresh_dsn, RING_TIMEOUT_SECONDS="1"):
        call_id = await insert_call(conn, caller, callee)
        row = await wait_for(lambda: _ended(conn, call_id), timeout=10)

        async def missed_sent() -> bool:
            rows = await _deliveries(conn, call_id, "missed")
            return len(rows) == 2 and all(r["status"] == "sent" for r in rows)

        await wait_for(missed_sent)
    assert row["end_reason"] == "missed" and row["ended_by"] is None
    lateness = (row["ended_at"] - row["ring_deadline"]).total_seconds()
    assert 0 <= lateness <= 2, lateness
    detail = await conn.fetchval(
        "select detail from public.call_audit where call_id = $1 and event = 'call_ended'", call_id
    )
    assert '"rang": true' in detail
    assert len(await _deliveries(conn, call_id, "stop")) == 1  # the Android device
    await conn.close()


async def test_busy_unreachable_and_blocked(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    a, b, c, d, e, f = [await create_user(conn) for _ in range(6)]
    for user in (b, d):
        await add_device(conn, user, "android")
    async with running_worker(fresh_dsn):
        first = await insert_call(conn, a, b)
        await wait_for(lambda: _deliveries(conn, first, "ring"))
        await client_update(conn, b, first, "accepted")
        busy = await insert_call(conn, c, b)
        no_device = await insert_call(conn, d, e)
        await conn.execute("insert into public.call_blocks values ($1, $2)", d, f)
        blocked = await insert_call(conn, f, d)
        rows = {}
        for call_id in (busy, no_device, blocked):
            rows[call_id] = await wait_for(lambda cid=call_id: _ended(conn, cid))
    assert rows[busy]["end_reason"] == "busy"
    assert rows[no_device]["end_reason"] == "unreachable"
    assert rows[blocked]["end_reason"] == "unreachable"
    reason = await conn.fetchval(
        "select detail->>'reason' from public.call_audit where call_id = $1"
        " and event = 'call_ended'",
        blocked,
    )
    assert reason == "blocked"
    assert await _deliveries(conn, blocked, "ring") == []
    await conn.close()


async def test_glare_merges_into_the_earlier_call(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    a, b = await create_user(conn), await create_user(conn)
    await add_device(conn, a, "android")
    await add_device(conn, b, "android")
    first = await insert_call(conn, a, b)
    second = await insert_call(conn, b, a)
    async with running_worker(fresh_dsn):
        loser = await wait_for(lambda: _ended(conn, second))

        async def accepted() -> asyncpg.Record | None:
            row = await _call(conn, first)
            return row if row["status"] == "accepted" else None

        await wait_for(accepted)
    assert loser["end_reason"] == "glare"
    merged = await conn.fetchval(
        "select detail->>'merged_into' from public.call_audit where call_id = $1"
        " and event = 'call_ended'",
        second,
    )
    assert merged == str(first)
    await conn.close()


async def test_call_first_seen_after_its_deadline_is_missed_unrung(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    caller, callee = await create_user(conn), await create_user(conn)
    await add_device(conn, callee, "android")
    await conn.execute("update orchestrator.settings set ring_timeout_seconds = 1")
    call_id = await insert_call(conn, caller, callee)
    await wait_for(
        lambda: conn.fetchval(
            "select now() > ring_deadline from public.calls where id = $1", call_id
        )
    )
    async with running_worker(fresh_dsn):
        row = await wait_for(lambda: _ended(conn, call_id))
    assert row["end_reason"] == "missed"
    detail = await conn.fetchval(
        "select detail->>'rang' from public.call_audit where call_id = $1 and event = 'call_ended'",
        call_id,
    )
    assert detail == "false"
    assert await _deliveries(conn, call_id, "ring") == []
    await conn.close()


async def test_accept_ends_the_callees_other_ringing_calls_busy(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    a, b, c = [await create_user(conn) for _ in range(3)]
    await add_device(conn, b, "android")
    async with running_worker(fresh_dsn):
        one = await insert_call(conn, a, b)
        two = await insert_call(conn, c, b)
        for call_id in (one, two):
            await wait_for(lambda cid=call_id: _deliveries(conn, cid, "ring"))
        await client_update(conn, b, one, "accepted")
        other = await wait_for(lambda: _ended(conn, two))
    assert other["end_reason"] == "busy" and other["ended_by"] is None
    await conn.close()


async def test_max_duration_ends_an_accepted_call(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    a, b = await create_user(conn), await create_user(conn)
    await add_device(conn, b, "android")
    async with running_worker(fresh_dsn, MAX_CALL_SECONDS="1"):
        call_id = await insert_call(conn, a, b)
        await wait_for(lambda: _deliveries(conn, call_id, "ring"))
        await client_update(conn, b, call_id, "accepted")
        row = await wait_for(lambda: _ended(conn, call_id))
    assert row["end_reason"] == "max_duration"
    assert (row["ended_at"] - row["accepted_at"]).total_seconds() >= 1
    await conn.close()


async def test_a_failing_pickup_ends_the_call_failed(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    a, b = await create_user(conn), await create_user(conn)
    await add_device(conn, b, "android")

    def explode(job: object) -> None:
        raise RuntimeError("injected fault")

    async with running_worker(fresh_dsn, pickup_hook=explode, JOB_MAX_ATTEMPTS="2"):
        call_id = await insert_call(conn, a, b)
        row = await wait_for(lambda: _ended(conn, call_id))
    assert row["end_reason"] == "failed"
    error = await conn.fetchval(
        "select detail->>'error' from public.call_audit where call_id = $1"
        " and event = 'call_ended'",
        call_id,
    )
    assert error == "RuntimeError"
    await conn.close()


async def test_a_deleted_callee_before_pickup_is_failed_not_a_crash(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    a, b, c = [await create_user(conn) for _ in range(3)]
    await add_device(conn, c, "android")
    broken = await insert_call(conn, a, b)
    await conn.execute("delete from auth.users where id = $1", b)
    async with running_worker(fresh_dsn):
        row = await wait_for(lambda: _ended(conn, broken))
        healthy = await insert_call(conn, a, c)  # the worker is still alive and ringing
        await wait_for(lambda: _deliveries(conn, healthy, "ring"))
    assert row["end_reason"] == "failed" and row["callee_id"] is None
    await conn.close()


async def test_decline_and_cancel(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    a, b = await create_user(conn), await create_user(conn)
    await add_device(conn, b, "android")
    async with running_worker(fresh_dsn):
        declined = await insert_call(conn, a, b)
        await wait_for(lambda: _deliveries(conn, declined, "ring"))
        await client_update(conn, b, declined, "ended", "declined")
        cancelled = await insert_call(conn, a, b)
        await wait_for(lambda: _deliveries(conn, cancelled, "ring"))
        await client_update(conn, a, cancelled, "ended", "cancelled")

        async def missed_sent() -> bool:
            rows = await _deliveries(conn, cancelled, "missed")
            return len(rows) == 1 and rows[0]["status"] == "sent"

        await wait_for(missed_sent)
    assert await _deliveries(conn, declined, "missed") == []
    assert len(await _deliveries(conn, declined, "stop")) == 1
    await conn.close()
