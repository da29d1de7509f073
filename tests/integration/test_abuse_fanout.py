"""One account cannot slow or blind everyone else's pushes (issue 10). The real worker with
the real FCM provider, against the FCM fake over HTTP (answering in 200 ms where it says so)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from orchestrator.adapters.postgres.store import PostgresStore
from tests.support.db import as_user, client_update, create_user, insert_call
from tests.support.push_e2e import (
    PushFakes,
    RealWorker,
    android_device,
    push_fakes,
    real_worker,
    unique,
)
from tests.support.wait import wait_for

LATENCY = 0.2  # the provider answers every push after 200 ms


@pytest.fixture
async def fakes(tmp_path: Path) -> AsyncIterator[PushFakes]:
    async with push_fakes(tmp_path, push_timeout=2.0) as running:
        yield running


@pytest.fixture
async def conn(fresh_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(fresh_dsn)
    yield connection
    await connection.close()


async def register_many(conn: asyncpg.Connection, who: uuid.UUID, n: int) -> list[str]:
    """As the client would: n registrations through the RPC (the only way in)."""
    tokens = [unique("ok") for _ in range(n)]
    for token in tokens:
        async with as_user(conn, who):
            await conn.execute("select public.register_push_device('android', $1)", token)
    return tokens


@pytest.mark.serial  # a latency bound: runs alone, after the parallel part of `make test`
async def test_a_bystanders_ring_is_sent_within_250ms_while_another_call_fans_out(
    conn: asyncpg.Connection, fresh_dsn: str, fakes: PushFakes
) -> None:
    fakes.fcm.latency = LATENCY
    attacker, sink = await create_user(conn), await create_user(conn)
    tokens = await register_many(conn, sink, 40)  # the cap keeps the 10 most recent
    caller, callee = await create_user(conn), await create_user(conn)
    bystander_token = unique("ok")
    await android_device(conn, callee, bystander_token)
    # Few slots, so that on a FIFO semaphore the fan-out alone would fill them for a second.
    async with real_worker(fresh_dsn, fakes, PUSH_CONCURRENCY="4", RING_TIMEOUT_SECONDS="10"):
        fan_out = await insert_call(conn, attacker, sink)

        async def fan_out_started() -> bool:
            return any(fakes.fcm.arrivals.get(t) for t in tokens)

        await wait_for(fan_out_started, timeout=10, interval=0.005)
        started = time.monotonic()
        await insert_call(conn, caller, callee)

        async def bystander_rang() -> bool:
            return bool(fakes.fcm.arrivals.get(bystander_token))

        await wait_for(bystander_rang, timeout=10, interval=0.005)
        waited = fakes.fcm.arrivals[bystander_token][0] - started

        async def fan_out_done() -> bool:
            pending = await conn.fetchval(
                "select count(*) from public.push_deliveries"
                " where call_id = $1 and kind = 'ring' and status = 'pending'",
                fan_out,
            )
            return pending == 0

        await wait_for(fan_out_done, timeout=15)
    rings = await conn.fetchval(
        "select count(*) from public.push_deliveries where call_id = $1 and kind = 'ring'", fan_out
    )
    assert rings == 10  # the cap: one call never creates more ring deliveries than that
    assert sum(len(fakes.fcm.arrivals.get(t, [])) for t in tokens) == 10
    assert waited <= 0.25, f"the bystander's ring reached the provider after {waited * 1000:.0f} ms"


# --- the pruning brake counts users, not tokens ------------------------------------------------

# default ratio 0.8; a quarantine a loaded machine still lands the whole wave inside
BRAKE = {"PRUNE_BRAKE_MIN": "5", "RING_TIMEOUT_SECONDS": "4", "PRUNE_QUARANTINE_SECONDS": "2"}


async def _brake(worker: RealWorker) -> float:
    samples = await worker.scrape()
    return next(
        (
            value
            for (metric, labels), value in samples.items()
            if metric == "orchestrator_prune_brake_engaged" and dict(labels)["provider"] == "fcm"
        ),
        0.0,
    )


async def _decided(conn: asyncpg.Connection, calls: list[uuid.UUID], n: int) -> bool:
    return bool(
        await conn.fetchval(
            "select count(*) >= $2 from public.push_deliveries where call_id = any($1)"
            " and kind = 'ring' and (status = 'pruned' or last_error like '%(prune braked)')",
            calls,
            n,
        )
    )


async def test_one_accounts_garbage_tokens_never_engage_the_brake(
    conn: asyncpg.Connection, fresh_dsn: str, fakes: PushFakes
) -> None:
    attacker, garbage = await create_user(conn), await create_user(conn)
    for _ in range(10):  # ten dead tokens of one account: more than PRUNE_BRAKE_MIN
        await android_device(conn, garbage, unique("unregistered"))
    async with real_worker(fresh_dsn, fakes, **BRAKE) as worker:
        call_id = await insert_call(conn, attacker, garbage)
        await wait_for(lambda: _decided(conn, [call_id], 10), timeout=15)
        engaged = await _brake(worker)
    statuses = await conn.fetch(
        "select d.status, v.disabled_reason from public.push_deliveries d"
        " join public.push_devices v on v.id = d.device_id"
        " where d.call_id = $1 and d.kind = 'ring'",
        call_id,
    )
    assert engaged == 0.0
    assert [r["status"] for r in statuses] == ["pruned"] * 10  # pruned, as dead tokens should be


async def test_a_misconfiguration_hitting_enough_users_still_engages_the_brake(
    conn: asyncpg.Connection, fresh_dsn: str, fakes: PushFakes
) -> None:
    calls = []
    async with real_worker(fresh_dsn, fakes, **BRAKE) as worker:
        for _ in range(6):  # six distinct users: at least PRUNE_BRAKE_MIN
            caller, callee = await create_user(conn), await create_user(conn)
            for _ in range(2):
                await android_device(conn, callee, unique("unregistered"))
            calls.append(await insert_call(conn, caller, callee))
        await wait_for(lambda: _decided(conn, calls, 12), timeout=15)
        engaged = await _brake(worker)
    assert engaged == 1.0
    pruned = await conn.fetchval(
        "select count(*) from public.push_deliveries where call_id = any($1) and status = 'pruned'",
        calls,
    )
    assert pruned == 0


# --- caller_name: cleaned, and read once per call -------------------------------------------


async def test_the_missed_call_notice_carries_a_clean_name(
    conn: asyncpg.Connection, fresh_dsn: str, fakes: PushFakes
) -> None:
    caller = await create_user(conn, name="\u202eSecurity team:\u200b call\n +1 555\u2028")
    callee = await create_user(conn)
    token = unique("ok")
    await android_device(conn, callee, token)
    async with real_worker(fresh_dsn, fakes):
        call_id = await insert_call(conn, caller, callee)
        await client_update(conn, caller, call_id, "ended", "cancelled")

        async def missed_sent() -> list[dict[str, object]]:
            return [
                s.message
                for s in fakes.fcm.requests
                if s.message.get("data", {}).get("kind") == "missed" and s.status == 200
            ]

        messages = await wait_for(missed_sent, timeout=10)
    data = messages[0]["data"]
    assert isinstance(data, dict)
    assert data["caller_name"] == "Security team: call +1 555"
    notification = messages[0]["android"]["notification"]  # type: ignore[index]
    assert notification["body_loc_args"] == ["Security team: call +1 555"]


async def _claim_seconds(
    store: PostgresStore, conn: asyncpg.Connection, call_id: uuid.UUID
) -> float:
    best = float("inf")
    for _ in range(5):
        await conn.execute(
            "update public.push_deliveries set locked_until = null, locked_by = null"
            " where call_id = $1",
            call_id,
        )
        started = time.perf_counter()
        claimed = await store.claim_deliveries(call_id, 1000)
        best = min(best, time.perf_counter() - started)
        assert len(claimed) == 300
    return best


async def test_caller_metadata_is_read_once_per_call_not_once_per_delivery(
    conn: asyncpg.Connection, fresh_dsn: str
) -> None:
    """300 deliveries of one call whose caller has 3 MB of metadata claim about as fast as
    with none (the first release read the metadata once per delivery row)."""
    await conn.execute("update orchestrator.settings set max_devices_per_user = 100")
    timings = {}
    pool = await asyncpg.create_pool(fresh_dsn, min_size=1, max_size=2)
    try:
        store = PostgresStore(pool, worker_id="bench", lease_seconds=30)
        for label, chunks in (("small", 0), ("large", 100_000)):  # none, or ~3 MB
            caller, callee = await create_user(conn, name="Ada"), await create_user(conn)
            # Random text: incompressible, so every read of the metadata really costs.
            await conn.execute(
                "update auth.users set raw_user_meta_data = raw_user_meta_data"
                " || jsonb_build_object('blob', (select coalesce(string_agg(md5(random()::text),"
                " ''), '') from generate_series(1, $2::int))) where id = $1",
                caller,
                chunks,
            )
            devices = [await android_device(conn, callee, unique("ok")) for _ in range(100)]
            call_id = await insert_call(conn, caller, callee)
            await conn.execute(
                "insert into public.push_deliveries"
                " (call_id, device_id, recipient_id, kind, provider, next_attempt_at)"
                " select $1, d, $2, k, 'fcm', now() - interval '1 second'"
                " from unnest($3::uuid[]) d, unnest(array['ring', 'stop', 'missed']) k",
                call_id,
                callee,
                devices,
            )
            timings[label] = await _claim_seconds(store, conn, call_id)
    finally:
        await pool.close()
    # Read per delivery, 300 reads of 3 MB cost about 0.2 s more than with no metadata.
    assert timings["large"] - timings["small"] < 0.08, timings
