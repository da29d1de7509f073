"""The engine on in-memory adapters: fast checks of ringing, retries, the brake, timers and
shutdown. The same behaviour against PostgreSQL is in tests/integration."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from orchestrator.domain.brake import PruneBrake
from orchestrator.domain.model import EndReason, Platform, Status
from orchestrator.domain.push import Permanent, Retry
from orchestrator.engine.engine import Engine
from orchestrator.engine.settings import EngineSettings
from orchestrator.metrics import Metrics
from orchestrator.ports import SystemClock, Wakeup
from orchestrator.testing.doubles import MemoryEventSource
from orchestrator.testing.memory_push import MemoryPushProvider
from orchestrator.testing.memory_store import MemDevice, MemoryStore
from tests.support.wait import wait_for

FAST = EngineSettings(
    lease_seconds=0.6,
    reconcile_interval=1,
    push_retry_base_seconds=0.01,
    shutdown_grace_seconds=0.5,
    idle_floor_seconds=0.01,
    prune_quarantine_seconds=0.1,
)


@asynccontextmanager
async def engine(
    store: MemoryStore, provider: MemoryPushProvider, brake: PruneBrake | None = None
) -> AsyncIterator[MemoryEventSource]:
    source = MemoryEventSource()
    core = Engine(
        store,
        {Platform.IOS: provider, Platform.ANDROID: provider},
        FAST,
        Metrics(),
        SystemClock(),
        brake=brake,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(core.run(stop, source))
    await asyncio.wait_for(source.subscribed.wait(), 5)
    try:
        yield source
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def callee_with(store: MemoryStore, *tokens: str) -> uuid.UUID:
    user = uuid.uuid4()
    for token in tokens:
        store.devices.append(MemDevice(user, Platform.ANDROID, token))
    return user


def statuses(store: MemoryStore, call_id: uuid.UUID, kind: str = "ring") -> list[str]:
    return sorted(
        d.status for d in store.deliveries.values() if d.call == call_id and d.kind.value == kind
    )


async def test_a_new_call_rings_every_device_once() -> None:
    store, provider = MemoryStore(), MemoryPushProvider()
    async with engine(store, provider) as source:
        call = store.insert_call(uuid.uuid4(), callee_with(store, "a", "b"))
        source.emit(Wakeup(call))
        await wait_for(lambda: _async(statuses(store, call) == ["sent", "sent"]))
    assert sorted(m.target_token or "" for m in provider.messages) == ["a", "b"]


async def test_a_transient_error_is_retried_then_sent() -> None:
    store, provider = MemoryStore(), MemoryPushProvider()
    provider.script("flaky", Retry("http_503"), Retry("http_429", retry_after=0.05))
    async with engine(store, provider) as source:
        call = store.insert_call(uuid.uuid4(), callee_with(store, "flaky"))
        source.emit(Wakeup(call))
        await wait_for(lambda: _async(statuses(store, call) == ["sent"]))
    delivery = next(iter(store.deliveries.values()))
    assert delivery.attempts == 3 and len(provider.sent_to("flaky")) == 3


async def test_every_ring_dead_means_unreachable_and_devices_pruned() -> None:
    store, provider = MemoryStore(), MemoryPushProvider()
    for token in ("dead1", "dead2"):
        provider.script(token, Permanent("Unregistered", prune=True))
    async with engine(store, provider) as source:
        call = store.insert_call(uuid.uuid4(), callee_with(store, "dead1", "dead2"))
        source.emit(Wakeup(call))
        await wait_for(lambda: _async(store.calls[call].status is Status.ENDED))
        # Disabled only after the quarantine, when the brake (none here) still allows it.
        await wait_for(lambda: _async(all(d.disabled for d in store.devices)))
    assert store.calls[call].end_reason is EndReason.UNREACHABLE


async def test_the_brake_keeps_devices_when_everything_looks_dead() -> None:
    store, provider = MemoryStore(), MemoryPushProvider()
    brake = PruneBrake(min_prunes=3, ratio=0.5)
    calls = []
    async with engine(store, provider, brake) as source:
        for n in range(6):
            provider.script(f"bad{n}", Permanent("BadDeviceToken", prune=True))
            calls.append(store.insert_call(uuid.uuid4(), callee_with(store, f"bad{n}")))
            source.emit(Wakeup(calls[-1]))
            await wait_for(lambda: _async(store.calls[calls[-1]].status is Status.ENDED))
        await wait_for(
            lambda: _async(sum("braked" in (d.error or "") for d in store.deliveries.values()) == 6)
        )
    # The quarantine let the wave show itself: not even the first answers pruned a device.
    assert not any(d.disabled for d in store.devices)
    assert all(d.status == "failed" for d in store.deliveries.values())


async def test_the_ring_timer_ends_the_call_missed_and_sends_missed() -> None:
    store, provider = MemoryStore(), MemoryPushProvider()
    async with engine(store, provider) as source:
        call = store.insert_call(uuid.uuid4(), callee_with(store, "tok"), ring_timeout=0.3)
        source.emit(Wakeup(call))
        await wait_for(lambda: _async(store.calls[call].status is Status.ENDED), timeout=3)
        await wait_for(lambda: _async(statuses(store, call, "missed") == ["sent"]))
    assert store.calls[call].end_reason is EndReason.MISSED


async def test_shutdown_hands_back_what_is_still_in_flight() -> None:
    store, provider = MemoryStore(), MemoryPushProvider()
    provider.hold("slow")
    async with engine(store, provider) as source:
        call = store.insert_call(uuid.uuid4(), callee_with(store, "slow"))
        source.emit(Wakeup(call))
        await wait_for(lambda: _async(bool(provider.messages)))
    delivery = next(iter(store.deliveries.values()))
    assert (
        delivery.status == "pending" and delivery.leased_until == 0.0
    )  # another worker may take it


async def _async(value: bool) -> bool:
    return value


async def test_an_end_that_leaves_no_work_is_not_swept() -> None:
    # ENDS_WITHOUT_WORK (the SQL side: tests/integration/test_accept_job.py); the wake-up is
    # still counted.
    metrics = Metrics()
    core = Engine(MemoryStore(), {}, FAST, metrics, SystemClock())
    done, cancelled = uuid.uuid4(), uuid.uuid4()
    core.wake(Wakeup(done, "completed", "completed"))
    core.wake(Wakeup(cancelled, "cancelled", "cancelled"))
    assert core._targets == {cancelled}
    assert metrics.calls_ended.labels("completed")._value.get() == 1
