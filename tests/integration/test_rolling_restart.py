"""Deploys without downtime, with real worker processes under a steady stream of calls.

- A rolling restart of two workers (A and B; SIGTERM A, start A'; SIGTERM B, start B'): every
  call ends the way its apps drove it, every delivery is sent exactly once, both SIGTERMs exit 0.
- Migrations under a running worker (expand/contract, docs/operations.md "Rolling deploys"):
  the worker starts on the schema it was released with, and every newer migration file is
  applied while it runs and calls flow. Today the worker and the migration files come from one
  checkout, so "newer" is empty and the test asserts the versions match; pointing
  ORCHESTRATOR_PREVIOUS_RELEASE_DIR at an unpacked previous release (its orchestrator/ and
  supabase/migrations/) runs THAT release's worker while this checkout's newer migrations apply.
- A synthetic expand-only migration (the additions the contract allows: nullable columns on
  every table the worker reads, a table, an index, a function) applied under a running worker
  while calls flow: nothing fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from orchestrator.adapters.postgres.migrate import applied_versions, discover, emulate_supabase
from orchestrator.adapters.postgres.migrate import migrate as apply_migrations
from tests.support.db import as_user, client_update
from tests.support.processes import WorkerProcess, sends_per_delivery
from tests.support.wait import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "supabase" / "migrations"
# Accepting must beat the ring deadline even while a worker drains on a busy 2-core machine.
RING_SECONDS = "6"
WORKER_ENV = {"RING_TIMEOUT_SECONDS": RING_SECONDS}
FATES = ("completed", "declined", "cancelled", "missed")
# Per fate, the deliveries the callee's Android + iOS devices get (kind -> rows).
EXPECTED_DELIVERIES = {
    "completed": {"ring": 2, "stop": 1},
    "declined": {"ring": 2, "stop": 1},
    "cancelled": {"ring": 2, "stop": 1, "missed": 2},
    "missed": {"ring": 2, "stop": 1, "missed": 2},
}
# Worker log events that mean something went wrong (docs/operations.md, log events).
TROUBLE = {
    "job_failed",
    "job_failure_not_recorded",
    "sweep_failed",
    "lease_renewal_failed",
    "job_unknown_kind_dropped",
    "listen_lost",
}


@dataclass
class Planned:
    call_id: uuid.UUID
    caller: uuid.UUID
    callee: uuid.UUID
    fate: str
    stage: str = "placed"  # placed -> (accepted ->) done


@dataclass
class Traffic:
    """A steady stream of calls from fresh caller/callee pairs, each driven by its "apps" to a
    planned end: the callee accepts (then the caller hangs up) or declines, the caller cancels,
    or nobody answers. Apps act only once both ring pushes are recorded as sent, as a phone
    would once it rang. One connection, one task: insert, look, act, pace."""

    conn: asyncpg.Connection
    pairs: list[tuple[uuid.UUID, uuid.UUID]]
    pace: float = 0.05  # paces the load (~20 calls/s); never used to wait for a state
    calls: dict[uuid.UUID, Planned] = field(default_factory=dict)
    rung: set[uuid.UUID] = field(default_factory=set)
    refused: list[tuple[Planned, str]] = field(default_factory=list)
    producing: bool = True
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def stop_producing(self) -> None:
        self.producing = False

    async def _run(self) -> None:
        while True:
            if self.producing and len(self.calls) < len(self.pairs):
                caller, callee = self.pairs[len(self.calls)]
                fate = FATES[len(self.calls) % len(FATES)]
                call_id = uuid.uuid4()  # the app's own id, as a retry-safe client sends it
                async with as_user(self.conn, caller):
                    await self.conn.execute(
                        "insert into public.calls (id, callee_id) values ($1, $2)", call_id, callee
                    )
                self.calls[call_id] = Planned(call_id, caller, callee, fate)
            await self._drive()
            await asyncio.sleep(self.pace)

    async def _drive(self) -> None:
        open_calls = [p for p in self.calls.values() if p.stage != "done"]
        if not open_calls:
            return
        rows = await self.conn.fetch(
            "select c.id, c.status, count(d.id) filter"
            " (where d.kind = 'ring' and d.status = 'sent') as rung"
            " from public.calls c left join public.push_deliveries d on d.call_id = c.id"
            " where c.id = any($1) group by c.id, c.status",
            [p.call_id for p in open_calls],
        )
        for row in rows:
            plan = self.calls[row["id"]]
            if row["rung"] == 2:
                self.rung.add(plan.call_id)
            try:
                await self._act(plan, row["status"], row["rung"] == 2)
            except asyncpg.PostgresError as exc:  # e.g. CA004: accepted after the deadline
                self.refused.append((plan, f"{exc.sqlstate}: {exc}"))
                plan.stage = "done"

    async def _act(self, plan: Planned, status: str, rung: bool) -> None:
        if plan.fate == "missed":
            if rung:
                plan.stage = "done"  # it rang and nobody answers: the ring timer ends it
        elif plan.stage == "placed" and status == "ringing" and rung:
            if plan.fate == "completed":
                await client_update(self.conn, plan.callee, plan.call_id, "accepted")
                plan.stage = "accepted"
            elif plan.fate == "declined":
                await client_update(self.conn, plan.callee, plan.call_id, "ended", "declined")
                plan.stage = "done"
            else:
                await client_update(self.conn, plan.caller, plan.call_id, "ended", "cancelled")
                plan.stage = "done"
        elif plan.stage == "accepted" and status == "accepted":
            await client_update(self.conn, plan.caller, plan.call_id, "ended", "completed")
            plan.stage = "done"

    async def wait_rung(self, count: int, timeout: float = 60) -> None:
        async def enough() -> bool:
            self._check()
            return len(self.rung) >= count

        await wait_for(enough, timeout=timeout)

    async def finish(self, timeout: float = 60) -> None:
        """Stop producing; wait until every app has done its part; stop the task."""
        self.stop_producing()

        async def driven() -> bool:
            self._check()
            return all(p.stage == "done" for p in self.calls.values())

        await wait_for(driven, timeout=timeout)
        await self.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _check(self) -> None:
        if self._task is not None and self._task.done():
            self._task.result()  # re-raise what killed the traffic


async def _pairs(conn: asyncpg.Connection, n: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """n fresh (caller, callee) pairs; every callee has an Android and an iOS device."""
    rows = await conn.fetch(
        "insert into auth.users (email, raw_user_meta_data)"
        " select 'r' || g || '-' || gen_random_uuid() || '@example.test', '{\"full_name\": \"R\"}'"
        " from generate_series(1, $1) g returning id",
        2 * n,
    )
    users = [r["id"] for r in rows]
    pairs = list(zip(users[:n], users[n:], strict=True))
    callees = [callee for _, callee in pairs]
    await conn.execute(
        "insert into public.push_devices (user_id, platform, token)"
        " select u, 'android', 'ok-fcm-' || gen_random_uuid() from unnest($1::uuid[]) u",
        callees,
    )
    await conn.execute(
        "insert into public.push_devices (user_id, platform, token, voip_token)"
        # APNs tokens: 64+ hex (abuse limits); "6f6b2d" is "ok-" hex-encoded for the fakes.
        " select u, 'ios', '6f6b2d' || md5(random()::text) || md5(random()::text),"
        " '6f6b2d' || md5(random()::text) || md5(random()::text)"
        " from unnest($1::uuid[]) u",
        callees,
    )
    return pairs


async def _spawn(dsn: str, path: Path, worker_id: str, **env: str) -> WorkerProcess:
    worker = WorkerProcess(dsn, path, worker_id, **WORKER_ENV, **env)

    async def subscribed() -> bool:
        if worker.proc.poll() is not None:
            raise AssertionError(f"{worker_id} exited: {path.read_text()[-2000:]}")
        return worker.subscribed()

    await wait_for(subscribed, timeout=30)
    return worker


async def _stop(worker: WorkerProcess) -> int:
    """SIGTERM and wait for the exit, off the event loop (the traffic keeps flowing)."""
    return await asyncio.to_thread(worker.terminate, 30)


async def _settled(conn: asyncpg.Connection, calls: list[uuid.UUID]) -> bool:
    """Every call ended, no delivery pending and no job left for them."""
    return await conn.fetchval(
        "select (select count(*) from public.calls where id = any($1) and status = 'ended')"
        " = cardinality($1)"
        " and not exists (select 1 from public.push_deliveries where call_id = any($1)"
        "                 and status = 'pending')"
        " and not exists (select 1 from orchestrator.jobs where call_id = any($1))",
        calls,
    )


async def _verify(
    conn: asyncpg.Connection, traffic: Traffic, workers: list[WorkerProcess]
) -> list[float]:
    """Every call ended as driven, every delivery sent exactly once. Returns missed lateness."""
    assert not traffic.refused, traffic.refused[:3]
    ids = list(traffic.calls)
    await wait_for(lambda: _settled(conn, ids), timeout=60)
    rows = await conn.fetch(
        "select id, end_reason, extract(epoch from ended_at - ring_deadline)::float8 as late"
        " from public.calls where id = any($1)",
        ids,
    )
    wrong = [(r["id"], traffic.calls[r["id"]].fate, r["end_reason"]) for r in rows]
    wrong = [w for w in wrong if w[1] != w[2]]
    assert not wrong, wrong[:5]
    deliveries = await conn.fetch(
        "select id, call_id, kind, status, provider from public.push_deliveries"
        " where call_id = any($1)",
        ids,
    )
    assert {(d["status"], d["provider"]) for d in deliveries} == {("sent", "log")}
    per_call: dict[uuid.UUID, Counter[str]] = {i: Counter() for i in ids}
    for d in deliveries:
        per_call[d["call_id"]][d["kind"]] += 1
    for call_id, kinds in per_call.items():
        assert kinds == EXPECTED_DELIVERIES[traffic.calls[call_id].fate], (call_id, kinds)
    sends = sends_per_delivery(*workers)
    mine = Counter({d["id"]: sends[d["id"]] for d in deliveries})
    assert min(mine.values()) == 1, "a delivery recorded as sent never reached the provider"
    assert max(mine.values()) == 1, mine.most_common(3)  # no crash: zero duplicates
    return [r["late"] for r in rows if r["end_reason"] == "missed"]


def _trouble(*workers: WorkerProcess) -> list[dict[str, object]]:
    return [e for w in workers for e in w.events() if e.get("event") in TROUBLE]


async def test_rolling_restart_of_two_workers_loses_and_repeats_nothing(
    fresh_dsn: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    traffic = Traffic(await asyncpg.connect(fresh_dsn), await _pairs(conn, 800))
    a = await _spawn(fresh_dsn, tmp_path / "a.log", "a")
    b = await _spawn(fresh_dsn, tmp_path / "b.log", "b")
    workers = [a, b]
    try:
        traffic.start()
        await traffic.wait_rung(15)
        assert await _stop(a) == 0  # B carries the stream while A drains
        workers.append(await _spawn(fresh_dsn, tmp_path / "a2.log", "a2"))
        await traffic.wait_rung(len(traffic.rung) + 15)
        assert await _stop(b) == 0  # A' carries it while B drains
        workers.append(await _spawn(fresh_dsn, tmp_path / "b2.log", "b2"))
        await traffic.wait_rung(len(traffic.rung) + 15)
        assert len(traffic.calls) < len(traffic.pairs), "ran out of fresh pairs mid-stream"
        await traffic.finish()
        lateness = await _verify(conn, traffic, workers)
    finally:
        await traffic.close()
        codes = [await _stop(w) for w in workers if w.proc.poll() is None]
        await traffic.conn.close()
        await conn.close()
    assert codes == [0, 0]  # A' and B'
    for old in (a, b):
        events = [e["event"] for e in old.events()]
        assert "worker_drained" in events and events[-1] == "worker_stopped", events[-5:]
    assert not _trouble(*workers)
    assert len(traffic.calls) >= 45 and set(Counter(p.fate for p in traffic.calls.values())) == (
        set(FATES)
    )
    # Timers kept firing through both restarts: the other worker ran the ring timeouts.
    assert lateness and max(lateness) < 2.0, sorted(lateness)[-5:]
    replacements = sends_per_delivery(*workers[2:])
    assert replacements, "A' and B' never sent anything"


# --- migrations under a running worker -------------------------------------------------------


@contextlib.asynccontextmanager
async def _empty_database(pg_server_dsn: str) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A database with only the Supabase emulation: each test migrates it as it needs."""
    name = f"orch_mig_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server_dsn)
    await admin.execute(f"create database {name}")
    base, _, query = pg_server_dsn.partition("?")
    dsn = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await emulate_supabase(conn)
            yield dsn, conn
        finally:
            await conn.close()
    finally:
        await admin.execute(f"drop database if exists {name} with (force)")
        await admin.close()


async def _round_of_calls(
    conn: asyncpg.Connection,
    dsn: str,
    n: int,
    during: Callable[[], Awaitable[None]] | None = None,
) -> Traffic:
    """n calls through every fate; `during` (an awaitable factory) runs mid-stream."""
    traffic = Traffic(await asyncpg.connect(dsn), await _pairs(conn, n))
    traffic.start()
    try:
        if during is not None:
            await traffic.wait_rung(max(4, n // 4))
            await during()
        await traffic.wait_rung(n)
        await traffic.finish()
    finally:
        await traffic.close()
        await traffic.conn.close()
    return traffic


async def test_migrations_newer_than_the_running_worker_apply_under_it(
    pg_server_dsn: str, tmp_path: Path
) -> None:
    previous = os.environ.get("ORCHESTRATOR_PREVIOUS_RELEASE_DIR")
    if previous:
        assert (Path(previous) / "orchestrator" / "worker.py").is_file(), previous
    released = Path(previous) / "supabase" / "migrations" if previous else MIGRATIONS
    started_with = [m.version for m in discover(released)]
    # The previous release's own code, ahead of this checkout's (not the current directory).
    code_env = {"PYTHONPATH": str(Path(previous)), "PYTHONSAFEPATH": "1"} if previous else {}
    async with _empty_database(pg_server_dsn) as (dsn, conn):
        assert await apply_migrations(conn, folder=released) == started_with
        worker = await _spawn(dsn, tmp_path / "w.log", "released", **code_env)
        try:
            first = await _round_of_calls(conn, dsn, 24)
            newer = [m.version for m in discover(MIGRATIONS) if m.version > max(started_with)]
            applied: list[str] = []

            async def migrate_now() -> None:
                applied.extend(await apply_migrations(conn, folder=MIGRATIONS))

            second = await _round_of_calls(conn, dsn, 24, during=migrate_now)
            assert applied == newer
            await _verify(conn, first, [worker])  # the worker's timers end the missed calls
            await _verify(conn, second, [worker])
        finally:
            code = await _stop(worker)
        assert code == 0
        assert not _trouble(worker), _trouble(worker)[:3]
        schema = sorted(await applied_versions(conn))
        if not newer:
            # One checkout: the worker was released with exactly the schema it runs on.
            assert started_with == schema == [m.version for m in discover(MIGRATIONS)]
        else:
            assert schema == sorted([*started_with, *newer])


EXPAND_PROBE = """
-- Expand-only, as docs/operations.md allows between releases: nullable or defaulted columns
-- on every table the worker reads, a new table, a new index, a new function.
alter table public.calls add column probe_note text;
alter table public.push_deliveries add column probe_note text;
alter table public.push_devices add column probe_note text default 'expand';
alter table public.call_audit add column probe_note text;
alter table orchestrator.jobs add column probe_note text;
create table orchestrator.probe (id bigint generated always as identity primary key);
create index push_deliveries_probe_idx on public.push_deliveries (probe_note);
create function orchestrator.probe() returns integer
language sql immutable set search_path = '' as $$ select 1 $$;
"""


async def test_an_expand_migration_applies_under_a_running_worker(
    fresh_dsn: str, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, folder)
    probe = "29991231235959_expand_probe.sql"
    (folder / probe).write_text(EXPAND_PROBE)
    conn = await asyncpg.connect(fresh_dsn)
    worker = await _spawn(fresh_dsn, tmp_path / "w.log", "w")
    applied: list[str] = []
    try:

        async def migrate_now() -> None:
            applied.extend(await apply_migrations(conn, folder=folder))

        traffic = await _round_of_calls(conn, fresh_dsn, 40, during=migrate_now)
        assert applied == ["29991231235959"]
        await _verify(conn, traffic, [worker])
    finally:
        code = await _stop(worker)
    assert code == 0
    assert not _trouble(worker), _trouble(worker)[:3]
    assert await conn.fetchval(
        "select count(*) from public.push_devices where probe_note = 'expand'"
    )
    await conn.close()
