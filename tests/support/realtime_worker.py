"""The real worker with EVENT_SOURCE=supabase against the fake Realtime server, fed from the
real test database, and the call scenes the through-the-worker Realtime tests share."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from orchestrator.adapters.realtime.source import RealtimeEventSource
from orchestrator.domain.model import Platform
from orchestrator.metrics import Metrics
from orchestrator.testing.memory_push import MemoryPushProvider
from orchestrator.worker import WorkerHooks, run_worker
from tests.fakes.realtime_server import FakeRealtimeServer
from tests.support.db import add_device, client_update, create_user, insert_call
from tests.support.wait import wait_for
from tests.support.worker import worker_settings

KEY = "sb_secret_fake0123456789abcdefXYZ"
RING_TIMEOUT = 3  # seconds; a call rung by the 1 s backstop is still answered ~2 s in time
# Short timers for the source (the brief: stall ~1 s, rejoin ~1.5 s, backoff base 0.05 s).
SOURCE_TIMERS: dict[str, Any] = {
    "backoff_base": 0.05, "backoff_max": 0.3, "stall_timeout": 1.0, "heartbeat_interval": 0.25,
    "check_interval": 0.05, "rejoin_timeout": 1.5, "join_timeout": 1, "client_max_retries": 2,
    "client_initial_backoff": 0.05, "close_timeout": 0.3, "stable_after": 0.5,
}  # fmt: skip


def count(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def until(condition: Callable[[], object], timeout: float = 8.0) -> None:
    async def check() -> object:
        return condition()

    await wait_for(check, timeout=timeout, interval=0.01)


@dataclass
class RealtimeWorker:
    source: RealtimeEventSource
    metrics: Metrics
    providers: dict[Platform, MemoryPushProvider]
    hooks: WorkerHooks
    stop: asyncio.Event
    task: asyncio.Task[None]

    def rebuilds(self) -> float:
        return count(self.metrics, "orchestrator_realtime_rebuilds_total")

    def subscribes(self) -> float:
        """Re-scans the source asked for after a "Subscribed to PostgreSQL"."""
        return count(self.metrics, "orchestrator_reconciles_total", trigger="realtime_subscribed")

    def events(self) -> float:
        return count(self.metrics, "orchestrator_realtime_events_total")

    def messages(self) -> list[Any]:
        return [m for p in self.providers.values() for m in p.messages]


@asynccontextmanager
async def running_realtime_worker(
    dsn: str,
    server: FakeRealtimeServer,
    *,
    wait_subscribed: bool = True,
    timers: dict[str, Any] | None = None,
    **env: str,
) -> AsyncIterator[RealtimeWorker]:
    """run_worker with EVENT_SOURCE=supabase, a RealtimeEventSource with short timers, and one
    MemoryPushProvider per platform (so each provider's counts() is per device of a call)."""
    settings = worker_settings(
        dsn,
        EVENT_SOURCE="supabase",
        SUPABASE_URL=server.url,
        SUPABASE_SERVICE_ROLE_KEY=server.apikey,
        **({"RING_TIMEOUT_SECONDS": str(RING_TIMEOUT)} | env),
    )
    metrics = Metrics()
    source = RealtimeEventSource(settings, metrics, **(SOURCE_TIMERS | (timers or {})))
    providers = {Platform.IOS: MemoryPushProvider(), Platform.ANDROID: MemoryPushProvider()}
    hooks = WorkerHooks(providers=dict(providers), metrics=metrics, source=source)
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop, hooks=hooks), name="realtime-worker")
    worker = RealtimeWorker(source, metrics, providers, hooks, stop, task)
    try:
        if wait_subscribed:
            started = asyncio.create_task(hooks.started.wait())
            await asyncio.wait({task, started}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
            started.cancel()
            if task.done():
                task.result()  # the worker's start-up error
            assert hooks.started.is_set(), "the worker did not subscribe within 15 s"
        yield worker
        assert not task.done(), "the worker stopped by itself"
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


@dataclass(eq=False)
class Call:
    id: uuid.UUID
    caller: uuid.UUID
    callee: uuid.UUID
    devices: dict[str, uuid.UUID]  # platform -> device id
    tokens: dict[str, str]  # platform -> the token its ring goes to
    answer: bool  # the callee accepts it; otherwise nobody answers and it ends `missed`
    phase: str


@dataclass
class Scene:
    """Calls between fresh users (a callee with an Android and an iOS device each)."""

    conn: asyncpg.Connection
    worker: RealtimeWorker
    calls: list[Call] = field(default_factory=list)
    writes: int = 0  # client writes so far: each one NOTIFYs the feed once

    async def place(self, phase: str, *, answer: bool) -> Call:
        caller, callee = await create_user(self.conn), await create_user(self.conn)
        android = await add_device(self.conn, callee, "android")
        ios = await add_device(self.conn, callee, "ios")
        tokens = dict(
            await self.conn.fetch(
                "select platform, case platform when 'ios' then voip_token else token end"
                " from public.push_devices where user_id = $1",
                callee,
            )
        )
        call_id = await insert_call(self.conn, caller, callee)
        self.writes += 1
        call = Call(
            call_id, caller, callee, {"android": android, "ios": ios}, tokens, answer, phase
        )
        self.calls.append(call)
        return call

    async def pair(self, phase: str) -> list[Call]:
        """One call the callee will answer, one nobody answers."""
        return [await self.place(phase, answer=True), await self.place(phase, answer=False)]

    async def deliveries(self, call: Call, kind: str) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            "select * from public.push_deliveries where call_id = $1 and kind = $2 order by id",
            call.id,
            kind,
        )

    async def rang(self, calls: list[Call], timeout: float = 6.0) -> None:
        async def all_rang() -> bool:
            for call in calls:
                rows = await self.deliveries(call, "ring")
                if len(rows) != 2 or any(r["status"] != "sent" for r in rows):
                    return False
            return True

        await wait_for(all_rang, timeout=timeout)

    async def answer(self, call: Call) -> None:
        try:
            await client_update(self.conn, call.callee, call.id, "accepted")
        except asyncpg.PostgresError as exc:  # e.g. refused after ring_deadline: rang too late
            left = await self.conn.fetchval(
                "select extract(epoch from ring_deadline - now()) from public.calls where id = $1",
                call.id,
            )
            raise AssertionError(f"{call.phase} call: answer refused ({left:.3f} s left)") from exc
        self.writes += 1

    async def settled(self, call: Call) -> bool:
        row = await self.conn.fetchrow("select * from public.calls where id = $1", call.id)
        stops = await self.deliveries(call, "stop")
        if len(stops) != 1 or stops[0]["status"] != "sent":
            return False
        if call.answer:
            return row["status"] == "accepted"
        missed = await self.deliveries(call, "missed")
        return (
            row["end_reason"] == "missed"
            and len(missed) == 2
            and all(r["status"] == "sent" for r in missed)
        )

    async def all_settled(self, timeout: float = 8.0) -> None:
        async def check() -> bool:
            return all([await self.settled(call) for call in self.calls])

        await wait_for(check, timeout=timeout, interval=0.05)

    async def check_outcomes(self) -> None:
        """Every call in its right state, with exactly one ring delivery per device."""
        for call in self.calls:
            row = await self.conn.fetchrow("select * from public.calls where id = $1", call.id)
            rings = await self.deliveries(call, "ring")
            where = f"{call.phase} call {call.id} (answer={call.answer})"
            assert sorted((r["device_id"], r["status"], r["attempts"]) for r in rings) == sorted(
                (device, "sent", 1) for device in call.devices.values()
            ), where
            stops = await self.deliveries(call, "stop")
            assert [(r["device_id"], r["status"]) for r in stops] == [
                (call.devices["android"], "sent")
            ], where
            missed = await self.deliveries(call, "missed")
            if call.answer:
                assert (row["status"], row["end_reason"]) == ("accepted", None), where
                assert row["accepted_at"] is not None and missed == [], where
            else:
                assert (row["status"], row["end_reason"], row["ended_by"]) == (
                    "ended", "missed", None,
                ), where  # fmt: skip
                lateness = (row["ended_at"] - row["ring_deadline"]).total_seconds()
                assert 0 <= lateness <= 1, f"{where}: ended {lateness:.3f} s after its deadline"
                assert sorted(r["device_id"] for r in missed) == sorted(call.devices.values())
                assert all(r["status"] == "sent" for r in missed), where
                rang = await self.conn.fetchval(
                    "select detail->>'rang' from public.call_audit"
                    " where call_id = $1 and event = 'call_ended'",
                    call.id,
                )
                assert rang == "true", where
        self.check_providers()

    def check_providers(self) -> None:
        """At the providers: no (call_id, kind, seq) twice to a device; one ring per device."""
        for platform, provider in self.worker.providers.items():
            dupes = {key: n for key, n in provider.counts().items() if n > 1}
            assert dupes == {}, f"{platform.value}: sent more than once: {dupes}"
        per_device = Counter(
            (m.target_token, str(m.call_id), m.kind.value, m.seq) for m in self.worker.messages()
        )
        assert max(per_device.values()) == 1, per_device.most_common(3)
        for call in self.calls:
            for platform, provider in self.worker.providers.items():
                rings = [
                    m for m in provider.messages if m.call_id == call.id and m.kind.value == "ring"
                ]
                assert [m.target_token for m in rings] == [call.tokens[platform.value]], call.phase
                assert rings[0].seq == 1


FaultStep = Callable[[FakeRealtimeServer, RealtimeWorker], Awaitable[None]]


async def nothing(server: FakeRealtimeServer, worker: RealtimeWorker) -> None:
    return None
