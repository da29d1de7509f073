"""Real worker processes: replicas share the work exactly once, crashes and SIGTERM lose nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from tests.support.db import add_device, as_user, client_update, create_user, insert_call
from tests.support.processes import WorkerProcess, sends_per_delivery
from tests.support.wait import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# For tests whose calls must still be ringable after a worker restart, or that answer or
# cancel every call themselves: a ring timeout no loaded machine outruns (the suite's 3 s can,
# and a call whose window closed while no worker ran ends missed without ringing).
SLOW_RING = {"RING_TIMEOUT_SECONDS": "50"}


async def _pairs(conn: asyncpg.Connection, n: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """n (caller, callee) pairs; every callee has an Android and an iOS device."""
    rows = await conn.fetch(
        "insert into auth.users (email) select 'u' || g || '@example.test'"
        " from generate_series(1, $1) g returning id",
        2 * n,
    )
    users = [r["id"] for r in rows]
    pairs = list(zip(users[:n], users[n:], strict=True))
    for _, callee in pairs:
        await add_device(conn, callee, "android")
        await add_device(conn, callee, "ios")
    return pairs


async def _start(
    conn: asyncpg.Connection, pairs: list[tuple[uuid.UUID, uuid.UUID]]
) -> list[uuid.UUID]:
    return [await insert_call(conn, caller, callee) for caller, callee in pairs]


async def _all_rung(conn: asyncpg.Connection, calls: list[uuid.UUID]) -> bool:
    sent = await conn.fetchval(
        "select count(*) from public.push_deliveries where call_id = any($1) and kind = 'ring'"
        " and status = 'sent'",
        calls,
    )
    return sent == 2 * len(calls)


async def _settled(conn: asyncpg.Connection) -> bool:
    """Nothing left to do: no pending delivery and no due job."""
    return await conn.fetchval(
        "select not exists (select 1 from public.push_deliveries where status = 'pending')"
        " and not exists (select 1 from orchestrator.jobs where kind in ('pickup', 'accepted'))"
    )


async def _spawn_subscribed(dsn: str, path: Path, worker_id: str, **env: str) -> WorkerProcess:
    worker = WorkerProcess(dsn, path, worker_id, **env)

    async def ready() -> bool:
        return worker.subscribed()

    await wait_for(ready, timeout=20)
    return worker


async def test_two_workers_send_every_delivery_exactly_once(fresh_dsn: str, tmp_path: Path) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    pairs = await _pairs(conn, 150)
    one = await _spawn_subscribed(fresh_dsn, tmp_path / "w1.log", "w1", **SLOW_RING)
    two = await _spawn_subscribed(fresh_dsn, tmp_path / "w2.log", "w2", **SLOW_RING)
    try:
        calls = await _start(conn, pairs)
        await wait_for(lambda: _all_rung(conn, calls), timeout=60)
        for index, ((caller, callee), call_id) in enumerate(zip(pairs, calls, strict=True)):
            if index % 2:
                await client_update(conn, caller, call_id, "ended", "cancelled")
            else:
                await client_update(conn, callee, call_id, "accepted")
        await wait_for(lambda: _settled(conn), timeout=60)
    finally:
        assert one.terminate() == 0
        assert two.terminate() == 0
    ledger = await conn.fetch(
        "select kind, status, count(*) as n from public.push_deliveries group by kind, status"
    )
    assert {(r["kind"], r["status"]): r["n"] for r in ledger} == {
        ("ring", "sent"): 300,
        ("stop", "sent"): 150,
        ("missed", "sent"): 75 * 2,
    }
    sends = sends_per_delivery(one, two)
    assert len(sends) == 600 and max(sends.values()) == 1, sends.most_common(3)
    await conn.close()


async def test_sigkill_mid_run_loses_nothing_after_restart(fresh_dsn: str, tmp_path: Path) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    pairs = await _pairs(conn, 120)
    first = await _spawn_subscribed(fresh_dsn, tmp_path / "a.log", "a", **SLOW_RING)
    calls = await _start(conn, pairs[:60])

    async def some_rung() -> bool:
        return bool(
            await conn.fetchval("select count(*) from public.push_deliveries where status = 'sent'")
        )

    await wait_for(some_rung)
    inserting = asyncio.create_task(_start(conn, pairs[60:]))
    first.kill()  # mid-run: calls are still arriving
    calls += await inserting
    second = await _spawn_subscribed(fresh_dsn, tmp_path / "b.log", "b", **SLOW_RING)
    try:
        await wait_for(lambda: _all_rung(conn, calls), timeout=60)
        for (caller, _), call_id in zip(pairs, calls, strict=True):
            await client_update(conn, caller, call_id, "ended", "cancelled")
        await wait_for(lambda: _settled(conn), timeout=30)
    finally:
        assert second.terminate() == 0
    stuck = await conn.fetchval(
        "select count(*) from public.calls where status = 'ringing' and id = any($1)"
        " and not exists (select 1 from public.push_deliveries d where d.call_id = calls.id)",
        calls,
    )
    assert stuck == 0
    rings = {
        r["id"]
        for r in await conn.fetch("select id from public.push_deliveries where kind = 'ring'")
    }
    assert len(rings) == 240

    def ring_sends(*workers: WorkerProcess) -> Counter[int]:
        return Counter({k: n for k, n in sends_per_delivery(*workers).items() if k in rings})

    sends = ring_sends(first, second)
    assert set(sends) == rings
    # A kill between the provider's acceptance and the mark may resend once, and only that:
    # every repeat is one send by the killed worker (in flight when it died) and one by its
    # successor; no worker ever sends a delivery twice.
    by_killed, by_successor = ring_sends(first), ring_sends(second)
    assert max(by_killed.values()) == 1 and max(by_successor.values()) == 1
    assert max(sends.values()) <= 2
    # What the cancels added (the stop and missed pushes) went out once each, by the successor.
    later = sends_per_delivery(second) - Counter({k: n for k, n in by_successor.items()})
    assert later and max(later.values()) == 1
    await conn.close()


async def test_sigterm_exits_zero_and_the_next_worker_continues(
    fresh_dsn: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    pairs = await _pairs(conn, 80)
    env = {"MAX_CALL_SECONDS": "2", **SLOW_RING}
    first = await _spawn_subscribed(fresh_dsn, tmp_path / "a.log", "a", **env)
    calls = await _start(conn, pairs[:40])
    await wait_for(lambda: _all_rung(conn, calls[:40]), timeout=30)
    for (_, callee), call_id in zip(pairs[:40], calls, strict=True):
        await client_update(conn, callee, call_id, "accepted")
    assert first.terminate() == 0  # max_duration timers are pending in the database
    calls += await _start(conn, pairs[40:])  # nobody is running: these wait in the database
    second = await _spawn_subscribed(fresh_dsn, tmp_path / "b.log", "b", **env)
    try:
        await wait_for(lambda: _all_rung(conn, calls), timeout=30)

        async def all_expired() -> bool:
            return await conn.fetchval(
                "select count(*) = 40 from public.calls where id = any($1)"
                " and end_reason = 'max_duration'",
                calls[:40],
            )

        await wait_for(all_expired, timeout=30)
    finally:
        assert second.terminate() == 0
    sends = sends_per_delivery(first, second)
    assert max(sends.values()) == 1
    events = [e["event"] for e in first.events()]
    assert "worker_drained" in events and "worker_stopped" in events
    await conn.close()


async def test_rls_still_applies_to_worker_made_rows(fresh_dsn: str, tmp_path: Path) -> None:
    """A stranger sees none of the deliveries the worker created."""
    conn = await asyncpg.connect(fresh_dsn)
    ((caller, callee),) = await _pairs(conn, 1)
    stranger = await create_user(conn)
    worker = await _spawn_subscribed(fresh_dsn, tmp_path / "w.log", "w")
    try:
        call_id = await insert_call(conn, caller, callee)
        await wait_for(lambda: _all_rung(conn, [call_id]))
    finally:
        assert worker.terminate() == 0
    async with as_user(conn, stranger):
        assert await conn.fetchval("select count(*) from public.push_deliveries") == 0
    async with as_user(conn, caller):
        assert await conn.fetchval("select count(*) from public.push_deliveries") == 0
        summary = await conn.fetchval("select public.call_ring_summary($1)", call_id)
    assert '"sent": 2' in summary
    await conn.close()
