"""Simulated apps: open-loop call inserts (time-to-ring), closed-loop full lifecycles, and the
ceiling: the worker's own SQL issued straight through the store, with no worker around it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from bench.db import Pair, accept_call, cancel_call, hang_up, insert_call
from bench.fakes import Arrivals
from orchestrator.adapters.postgres.store import PostgresStore
from orchestrator.domain.pickup import decide_pickup
from orchestrator.domain.work import ClaimedDelivery, DeliveryOutcome, JobKind, OutcomeStatus

T = TypeVar("T")
RING_WAIT = 15.0  # a ring that has not arrived by then is counted as lost
Route = Callable[[Pair], Arrivals]  # which fake a pair's callee device is rung through


@dataclass
class RingRun:
    latencies: list[float] = field(default_factory=list)  # commit ack → ring at the fake
    by_platform: dict[str, list[float]] = field(default_factory=dict)
    lost: int = 0
    errors: list[str] = field(default_factory=list)
    schedule_lag: list[float] = field(default_factory=list)  # how late each insert was issued
    calls: list[uuid.UUID] = field(default_factory=list)


async def open_loop_rings(
    pool: asyncpg.Pool, route: Route, pairs: Sequence[Pair], rate: float, seconds: float
) -> RingRun:
    """One call per pair, inserted at `rate` per second on a fixed schedule (not back-to-back:
    a slow insert does not delay the next one)."""
    run = RingRun()
    n = min(len(pairs), int(rate * seconds))
    loop = asyncio.get_running_loop()

    async def one(pair: Pair) -> None:
        call_id = uuid.uuid4()
        run.calls.append(call_id)
        arrivals = route(pair)
        ring = arrivals.expect(call_id)
        try:
            async with pool.acquire() as conn:
                await insert_call(conn, pair, call_id)
            acked = time.monotonic()
            arrived = await asyncio.wait_for(ring, RING_WAIT)
            run.latencies.append(arrived - acked)
            run.by_platform.setdefault(pair.platform, []).append(arrived - acked)
        except TimeoutError:
            run.lost += 1
        except Exception as exc:
            run.errors.append(f"{type(exc).__name__}: {exc}"[:200])
        finally:
            arrivals.forget(call_id)

    start = loop.time() + 0.05
    tasks = []
    for i in range(n):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        run.schedule_lag.append(max(0.0, loop.time() - due))
        tasks.append(asyncio.create_task(one(pairs[i])))
    await asyncio.gather(*tasks)
    return run


@dataclass
class LifecycleRun:
    lifecycles: int = 0
    started: float = 0.0
    finished: float = 0.0  # last hang-up committed
    ring_latencies: list[float] = field(default_factory=list)
    ring_times: list[float] = field(default_factory=list)  # when each ring arrived
    lifecycle_seconds: list[float] = field(default_factory=list)
    lost_rings: int = 0
    errors: list[str] = field(default_factory=list)
    calls: list[uuid.UUID] = field(default_factory=list)

    def note_error(self, exc: BaseException) -> None:
        if len(self.errors) < 20:
            self.errors.append(f"{type(exc).__name__}: {exc}"[:200])


async def lifecycle(pool: asyncpg.Pool, route: Route, pair: Pair, run: LifecycleRun) -> bool:
    """insert → (ring arrives at the fake, as on the callee's phone) → accept → hang up."""
    call_id = uuid.uuid4()
    arrivals = route(pair)
    ring = arrivals.expect(call_id)
    began = time.monotonic()
    try:
        async with pool.acquire() as conn:
            await insert_call(conn, pair, call_id)
        acked = time.monotonic()
        run.calls.append(call_id)
        try:
            arrived = await asyncio.wait_for(ring, RING_WAIT)
        except TimeoutError:
            run.lost_rings += 1
            async with pool.acquire() as conn:  # the caller gives up
                await cancel_call(conn, pair, call_id)
            return False
        run.ring_latencies.append(arrived - acked)
        run.ring_times.append(arrived)
        async with pool.acquire() as conn:
            await accept_call(conn, pair, call_id)
            await hang_up(conn, pair, call_id)
        run.lifecycles += 1
        run.finished = time.monotonic()
        run.lifecycle_seconds.append(run.finished - began)
        return True
    except Exception as exc:
        run.note_error(exc)
        return False
    finally:
        arrivals.forget(call_id)


async def closed_loop(
    pool: asyncpg.Pool,
    route: Route,
    pairs: Sequence[Pair],
    seconds: float,
    *,
    limit: int = 0,
) -> LifecycleRun:
    """Every pair runs lifecycles back to back for `seconds` (or until `limit` in total)."""
    run = LifecycleRun(started=time.monotonic())
    until = run.started + seconds

    async def client(pair: Pair) -> None:
        while time.monotonic() < until and (not limit or run.lifecycles < limit):
            if not await lifecycle(pool, route, pair, run):
                return  # this pair's caller may still have an open call: retire it

    await asyncio.gather(*(client(p) for p in pairs))
    if not run.finished:
        run.finished = time.monotonic()
    return run


async def open_loop_lifecycles(
    pool: asyncpg.Pool,
    route: Route,
    pairs: Sequence[Pair],
    rate: float,
    seconds: float,
) -> tuple[LifecycleRun, int]:
    """Lifecycles started at `rate` per second; each takes a free pair. Returns the run and how
    many starts were skipped because every pair was busy."""
    run = LifecycleRun(started=time.monotonic())
    free: asyncio.Queue[Pair] = asyncio.Queue()
    for pair in pairs:
        free.put_nowait(pair)
    loop = asyncio.get_running_loop()
    skipped = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(pair: Pair) -> None:
        if await lifecycle(pool, route, pair, run):
            free.put_nowait(pair)

    start = loop.time()
    i = 0
    while loop.time() - start < seconds:
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        i += 1
        if free.empty():
            skipped += 1
            continue
        task = asyncio.create_task(one(free.get_nowait()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return run, skipped


class Ceiling:
    """The worker's per-call SQL, statement for statement, through the same PostgresStore on
    the same driver and pool size, in the order `Engine.sweep(call_id)` issues it for each
    wake-up of a lifecycle: no event loop of its own, no LISTEN, no providers. `seconds` adds
    up the wall time of each store call (and of the client writes), to show where it goes."""

    def __init__(self, pool: asyncpg.Pool, batch: int = 200) -> None:
        self.store = PostgresStore(pool, worker_id="ceiling", lease_seconds=5.0)
        self.batch = batch
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    async def _t(self, name: str, awaitable: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            return await awaitable
        finally:
            self.seconds[name] += time.perf_counter() - started
            self.calls[name] += 1

    async def _record(self, deliveries: list[ClaimedDelivery]) -> None:
        if deliveries:
            outcomes = [
                DeliveryOutcome(
                    d.id, d.message.call_id, OutcomeStatus.SENT, d.provider, None, f"m{d.id}"
                )
                for d in deliveries
            ]
            await self._t("record_outcomes", self.store.record_outcomes(outcomes))

    async def sweep(self, call_id: uuid.UUID) -> None:
        """What one wake-up for `call_id` costs the worker in SQL."""
        jobs = await self._t("claim_jobs", self.store.claim_jobs(call_id, self.batch))
        rings: list[ClaimedDelivery] = []
        for job in jobs:
            if job.kind == JobKind.PICKUP:
                result = await self._t("pickup", self.store.pickup(job, decide_pickup))
                rings += result.deliveries
            elif job.kind == JobKind.ACCEPTED:
                await self._t("end_busy_after_accept", self.store.end_busy_after_accept(job))
        await self._record(rings)
        claimed = await self._t(
            "claim_deliveries", self.store.claim_deliveries(call_id, self.batch)
        )
        await self._record(claimed)

    async def _client(self, name: str, pool: asyncpg.Pool, write: Any) -> None:
        started = time.perf_counter()
        async with pool.acquire() as conn:
            await write(conn)
        self.seconds[name] += time.perf_counter() - started
        self.calls[name] += 1

    async def lifecycle(self, pool: asyncpg.Pool, pair: Pair, run: LifecycleRun) -> None:
        call_id = uuid.uuid4()
        began = time.monotonic()
        await self._client("client_insert", pool, lambda c: insert_call(c, pair, call_id))
        await self.sweep(call_id)  # pickup, ring recorded as sent
        await self._client("client_accept", pool, lambda c: accept_call(c, pair, call_id))
        await self.sweep(call_id)  # the `accepted` job, the stop push recorded as sent
        await self._client("client_hang_up", pool, lambda c: hang_up(c, pair, call_id))
        await self.sweep(call_id)  # the hang-up's wake-up: nothing left to do
        run.lifecycles += 1
        run.finished = time.monotonic()
        run.lifecycle_seconds.append(run.finished - began)
        run.calls.append(call_id)

    async def closed_loop(
        self, pool: asyncpg.Pool, pairs: Sequence[Pair], seconds: float
    ) -> LifecycleRun:
        run = LifecycleRun(started=time.monotonic())
        until = run.started + seconds

        async def client(pair: Pair) -> None:
            while time.monotonic() < until:
                try:
                    await self.lifecycle(pool, pair, run)
                except Exception as exc:
                    run.note_error(exc)
                    return

        await asyncio.gather(*(client(p) for p in pairs))
        return run

    def breakdown(self, lifecycles: int) -> list[dict[str, Any]]:
        """Wall milliseconds per lifecycle by step (concurrent steps overlap: wall, not CPU)."""
        n = max(lifecycles, 1)
        return [
            {
                "step": name,
                "calls_per_lifecycle": round(self.calls[name] / n, 2),
                "ms_per_lifecycle": round(1000 * seconds / n, 3),
                "ms_per_call": round(1000 * seconds / max(self.calls[name], 1), 3),
            }
            for name, seconds in self.seconds.most_common()
        ]
