"""One CallStore contract, run against both stores: the in-memory double (orchestrator.testing)
and the PostgreSQL adapter. The same test functions; only the `world` fixture differs. What the
memory store does beyond these tests is not a promise (its docstring says so).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import pytest

from orchestrator.adapters.postgres.store import PostgresStore
from orchestrator.domain.model import EndReason, Platform
from orchestrator.domain.pickup import End, Ring, decide_pickup
from orchestrator.domain.push import PushKind
from orchestrator.domain.work import DeliveryOutcome, Job, JobKind, OutcomeStatus
from orchestrator.ports import CallStore
from orchestrator.testing.memory_store import MemDevice, MemoryStore
from tests.support.db import add_device, create_user

pytestmark = pytest.mark.postgres


@dataclass
class World:
    store: CallStore
    # A new ringing call from a fresh caller to a fresh callee with `devices` Android devices.
    new_call: Callable[[int], Awaitable[uuid.UUID]]


async def _memory() -> AsyncIterator[World]:
    store = MemoryStore()

    async def new_call(devices: int) -> uuid.UUID:
        caller, callee = uuid.uuid4(), uuid.uuid4()
        for n in range(devices):
            store.devices.append(MemDevice(callee, Platform.ANDROID, f"ok-fcm-{n}"))
        return store.insert_call(caller, callee)

    yield World(store, new_call)


async def _postgres(dsn: str) -> AsyncIterator[World]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    conn = await asyncpg.connect(dsn)
    try:

        async def new_call(devices: int) -> uuid.UUID:
            caller, callee = await create_user(conn), await create_user(conn)
            for _ in range(devices):
                await add_device(conn, callee)
            call_id: uuid.UUID = await conn.fetchval(
                "insert into public.calls (caller_id, callee_id) values ($1, $2) returning id",
                caller,
                callee,
            )
            return call_id

        yield World(PostgresStore(pool, worker_id="contract", lease_seconds=30), new_call)
    finally:
        await conn.close()
        await pool.close()


@pytest.fixture(params=["memory", "postgres"])
async def world(request: pytest.FixtureRequest, fresh_dsn: str) -> AsyncIterator[World]:
    worlds = _memory() if request.param == "memory" else _postgres(fresh_dsn)
    async for w in worlds:
        yield w


async def _pickup_job(world: World, call_id: uuid.UUID) -> Job:
    jobs = await world.store.claim_jobs(call_id, 10)
    pickups = [j for j in jobs if j.kind == JobKind.PICKUP.value]
    assert len(pickups) == 1
    return pickups[0]


async def test_a_new_call_has_one_due_pickup_job_and_a_leased_job_is_not_claimed_twice(
    world: World,
) -> None:
    call_id = await world.new_call(1)
    jobs = await world.store.claim_jobs(call_id, 10)
    assert [j.kind for j in jobs] == [JobKind.PICKUP.value]  # the ring timeout is not due yet
    assert await world.store.claim_jobs(call_id, 10) == []


async def test_pickup_rings_every_device_of_the_callee_leased_and_sendable(world: World) -> None:
    call_id = await world.new_call(2)
    job = await _pickup_job(world, call_id)
    result = await world.store.pickup(job, decide_pickup)
    assert isinstance(result.decision, Ring)
    assert len(result.deliveries) == 2
    assert {r.message.kind for r in result.deliveries} == {PushKind.RING}
    assert all(r.void_reason is None and r.attempts == 1 for r in result.deliveries)
    # Born leased to this worker: nobody claims them again meanwhile.
    assert await world.store.claim_deliveries(call_id, 10) == []
    assert await world.store.claim_jobs(call_id, 10) == []  # the pickup job is finished


async def test_a_callee_without_devices_is_unreachable_at_once(world: World) -> None:
    call_id = await world.new_call(0)
    job = await _pickup_job(world, call_id)
    result = await world.store.pickup(job, decide_pickup)
    assert isinstance(result.decision, End)
    assert result.decision.reason is EndReason.UNREACHABLE
    assert [e.call_id for e in result.ended] == [call_id]
    assert result.deliveries == []


async def test_end_call_is_idempotent(world: World) -> None:
    call_id = await world.new_call(1)
    first = await world.store.end_call(call_id, EndReason.FAILED, {})
    assert first is not None and first.call_id == call_id
    assert first.end_reason is EndReason.FAILED and first.from_status == "ringing"
    assert await world.store.end_call(call_id, EndReason.FAILED, {}) is None


async def test_every_ring_failing_ends_the_call_unreachable(world: World) -> None:
    call_id = await world.new_call(2)
    job = await _pickup_job(world, call_id)
    rings = (await world.store.pickup(job, decide_pickup)).deliveries
    failed = [
        DeliveryOutcome(r.message.delivery_id, call_id, OutcomeStatus.FAILED, "fcm", "bad")
        for r in rings
    ]
    first = await world.store.record_outcomes(failed[:1])
    assert first.ended == []  # one ring is still out
    rest = await world.store.record_outcomes(failed[1:])
    assert [(e.call_id, e.end_reason) for e in rest.ended] == [(call_id, EndReason.UNREACHABLE)]


async def test_a_sent_ring_is_not_claimed_again_and_a_retry_comes_back(world: World) -> None:
    call_id = await world.new_call(2)
    job = await _pickup_job(world, call_id)
    rings = (await world.store.pickup(job, decide_pickup)).deliveries
    sent, retried = rings
    await world.store.record_outcomes(
        [
            DeliveryOutcome(sent.message.delivery_id, call_id, OutcomeStatus.SENT, "fcm"),
            DeliveryOutcome(
                retried.message.delivery_id,
                call_id,
                OutcomeStatus.RETRY,
                "fcm",
                "unavailable",
                retry_in=0.0,
            ),
        ]
    )
    again = await world.store.claim_deliveries(call_id, 10)
    assert [d.message.delivery_id for d in again] == [retried.message.delivery_id]
    assert again[0].attempts == 2


async def test_release_gives_a_lease_back_at_once(world: World) -> None:
    call_id = await world.new_call(1)
    job = await _pickup_job(world, call_id)
    await world.store.release([job.id], [])
    assert [j.id for j in await world.store.claim_jobs(call_id, 10)] == [job.id]


async def test_ping(world: World) -> None:
    assert await world.store.ping() is True
