"""The scenarios of issue 4. Each runs on fresh databases cloned from the migrated template
and returns plain data (figures in ms, seconds, per-second rates) for the report."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bench import stats
from bench.ceiling import real_ceiling
from bench.config import BenchConfig
from bench.db import Pair, Server, client_pool, create_pairs, seed_ringing
from bench.dbwork import DbMeter
from bench.fakes import Arrivals, Fakes
from bench.load import Ceiling, LifecycleRun, closed_loop, open_loop_rings
from bench.procs import CpuMeter, Proc, start_worker, start_workers, stop_all
from orchestrator.adapters.postgres.pool import create_pool

TRANSITIONS_PER_LIFECYCLE = 3  # ringing (created) → accepted → ended/completed
LATENCY_KEYS = ("p50_ms", "p95_ms", "p99_ms", "max_ms")
Log = Callable[[str], None]


@dataclass
class Context:
    config: BenchConfig
    server: Server
    fakes: Fakes
    log: Log
    notes: list[str] = field(default_factory=list)

    def worker_env(self, *, pushes: bool = True) -> dict[str, str]:
        env = {"DB_POOL_SIZE": str(self.config.worker_pool)}
        if self.config.wake_slots is not None:  # BENCH_WAKE_SLOTS=0: the previous wake-ups
            env["WAKE_SLOTS"] = str(self.config.wake_slots)
        if pushes:
            env |= self.fakes.push_env()
        return env


def _interleave(*groups: list[Pair]) -> list[Pair]:
    out: list[Pair] = []
    for i in range(max(len(g) for g in groups)):
        out += [g[i] for g in groups if i < len(g)]
    return out


async def _wait_for(check: Callable[[], Awaitable[bool]], timeout: float, step: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(step)
    return await check()


async def _wait_kind(arrivals: Arrivals, kind: str, count: int, timeout: float) -> float:
    """Wait until `count` pushes of `kind` arrived; returns the last one's arrival time."""

    async def done() -> bool:
        return arrivals.by_kind[kind] >= count

    await _wait_for(done, timeout, 0.005)
    times = [t for t, _, k in arrivals.times if k == kind]
    return max(times) if times else time.monotonic()


async def _table_counts(conn: asyncpg.Connection) -> dict[str, Any]:
    audit = await conn.fetch("select event, count(*) as n from public.call_audit group by 1")
    pushes = await conn.fetch(
        "select kind || '/' || status as k, count(*) as n from public.push_deliveries group by 1"
    )
    return {
        "audit": {r["event"]: r["n"] for r in audit},
        "deliveries": {r["k"]: r["n"] for r in pushes},
    }


# --- 1. time-to-ring ---------------------------------------------------------------------


async def time_to_ring(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    n = int(cfg.ring_rate * cfg.ring_seconds)
    warmup = 10
    runs: list[dict[str, Any]] = []
    for repeat in range(cfg.repeats):
        async with ctx.server.database("ring") as dsn:
            conn = await asyncpg.connect(dsn)
            half = (n + warmup + 1) // 2
            pairs = _interleave(
                await create_pairs(conn, half, "android"), await create_pairs(conn, half, "ios")
            )
            pool = await client_pool(dsn, 16)
            worker = await start_worker(dsn, f"ring{repeat}", **ctx.worker_env())
            ctx.fakes.reset()
            try:
                # connections, OAuth token and TLS are set up by the first pushes: not measured
                await open_loop_rings(pool, ctx.fakes.route, pairs[:warmup], 20, 0.5)
                with CpuMeter([worker]) as cpu:
                    run = await open_loop_rings(
                        pool, ctx.fakes.route, pairs[warmup:], cfg.ring_rate, cfg.ring_seconds
                    )
                rss = worker.rss()
            finally:
                await worker.stop()
                await pool.close()
            counts = await _table_counts(conn)
            await conn.close()
        result = {
            "calls": len(run.calls),
            "latency": stats.latency_ms(run.latencies),
            "by_platform": {p: stats.latency_ms(v) for p, v in sorted(run.by_platform.items())},
            "lost": run.lost,
            "errors": run.errors[:5],
            "schedule_lag": stats.latency_ms(run.schedule_lag),
            "cpu": cpu.as_dict(),
            "worker_rss_mb": round(rss / 2**20, 1),
            "duplicates": ctx.fakes.duplicates(),
            "deliveries": counts["deliveries"],
            "samples_ms": sorted(round(v * 1000, 3) for v in run.latencies),
        }
        runs.append(result)
        lat = result["latency"]
        ctx.log(
            f"  time-to-ring run {repeat + 1}: p50 {lat.get('p50_ms')} ms, "
            f"p99 {lat.get('p99_ms')} ms, lost {run.lost}"
        )
    return {
        "rate_per_s": cfg.ring_rate,
        "seconds": cfg.ring_seconds,
        "platforms": "half Android (FCM fake, HTTP/1.1), half iOS (APNs fake, HTTP/2 + TLS)",
        "summary": stats.repeated_dists([r["latency"] for r in runs], LATENCY_KEYS),
        "by_platform": {
            p: stats.repeated_dists([r["by_platform"][p] for r in runs], LATENCY_KEYS)
            for p in ("android", "ios")
        },
        "lost": sum(r["lost"] for r in runs),
        "duplicates": sum(r["duplicates"] for r in runs),
        "runs": runs,
    }


# --- 2. throughput vs ceiling, and 4. replicas ---------------------------------------------


async def worker_lifecycles(
    ctx: Context, workers: int, seconds: float, label: str
) -> dict[str, Any]:
    """Closed-loop lifecycles through `workers` real worker processes (Android, FCM fake)."""
    cfg = ctx.config
    async with ctx.server.database(label) as dsn:
        conn = await asyncpg.connect(dsn)
        pairs = await create_pairs(conn, cfg.clients, "android")
        pool = await client_pool(dsn, cfg.clients)
        procs = await start_workers(dsn, workers, prefix=f"{label}-w", **ctx.worker_env())
        ctx.fakes.reset()
        codes: list[int] = []
        meter = DbMeter(conn)
        try:
            await meter.start()
            with CpuMeter(procs) as cpu:
                run = await closed_loop(pool, ctx.fakes.route, pairs, seconds)
                settled = await _wait_kind(ctx.fakes.fcm.arrivals, "stop", run.lifecycles, 15)
            await meter.cpu_end()
            rss = [p.rss() for p in procs]
        finally:
            codes = await stop_all(procs)
            await pool.close()
        database = await meter.finish(run.lifecycles)
        counts = await _table_counts(conn)
        await conn.close()
    elapsed = max(settled, run.finished) - run.started
    audited = sum(counts["audit"].values())
    return {
        "workers": workers,
        "lifecycles": run.lifecycles,
        "seconds": round(elapsed, 3),
        "transitions_per_s": round(TRANSITIONS_PER_LIFECYCLE * run.lifecycles / elapsed, 1),
        "lifecycles_per_s": round(run.lifecycles / elapsed, 1),
        "audit_rows_per_lifecycle": round(audited / max(run.lifecycles, 1), 2),
        "drain_s": round(max(0.0, settled - run.finished), 3),
        "ring_latency": stats.latency_ms(run.ring_latencies),
        "lifecycle_latency": stats.latency_ms(run.lifecycle_seconds),
        "lost_rings": run.lost_rings,
        "errors": run.errors[:5],
        "duplicates": ctx.fakes.duplicates(),
        "database": database,
        "fake_requests": dict(ctx.fakes.fcm.arrivals.by_kind),
        "deliveries": counts["deliveries"],
        "audit": counts["audit"],
        "cpu": cpu.as_dict(),
        "worker_rss_mb": [round(r / 2**20, 1) for r in rss],
        "exit_codes": codes,
    }


async def serial_sql_lifecycles(ctx: Context, seconds: float) -> dict[str, Any]:
    """The worker's own SQL, one step after another on each client's critical path (formerly
    called "the ceiling": the worker overlaps this work, so it is not an upper bound)."""
    cfg = ctx.config
    async with ctx.server.database("serial") as dsn:
        conn = await asyncpg.connect(dsn)
        pairs = await create_pairs(conn, cfg.clients, "android")
        pool = await client_pool(dsn, cfg.clients)
        store_pool = await create_pool(dsn, size=cfg.worker_pool, name="bench-serial-sql")
        ceiling = Ceiling(store_pool)
        meter = DbMeter(conn)
        try:
            await meter.start()
            with CpuMeter([]) as cpu:
                run = await ceiling.closed_loop(pool, pairs, seconds)
            await meter.cpu_end()
        finally:
            await store_pool.close()
            await pool.close()
        database = await meter.finish(run.lifecycles)
        counts = await _table_counts(conn)
        await conn.close()
    elapsed = run.finished - run.started
    audited = sum(counts["audit"].values())
    return {
        "lifecycles": run.lifecycles,
        "seconds": round(elapsed, 3),
        "transitions_per_s": round(TRANSITIONS_PER_LIFECYCLE * run.lifecycles / elapsed, 1),
        "lifecycles_per_s": round(run.lifecycles / elapsed, 1),
        "audit_rows_per_lifecycle": round(audited / max(run.lifecycles, 1), 2),
        "lifecycle_latency": stats.latency_ms(run.lifecycle_seconds),
        "errors": run.errors[:5],
        "deliveries": counts["deliveries"],
        "cpu": cpu.as_dict(),
        "database": database,
        "sql_breakdown": ceiling.breakdown(run.lifecycles),
        "statements_per_lifecycle_client_side": round(
            sum(ceiling.calls.values()) / max(run.lifecycles, 1), 2
        ),
    }


async def real_ceiling_lifecycles(ctx: Context, seconds: float) -> dict[str, Any]:
    async with ctx.server.database("ceiling") as dsn:
        conn = await asyncpg.connect(dsn)
        meter = DbMeter(conn)
        try:
            await meter.start()
            with CpuMeter([]) as cpu:
                result = await real_ceiling(dsn, ctx.config.worker_pool, seconds, meter.cpu_end)
            result["database"] = await meter.finish(result["lifecycles"])
        finally:
            await conn.close()
    result["cpu"] = cpu.as_dict()
    return result


async def throughput(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    pairs: list[dict[str, Any]] = []
    # The quick run (a smoke test with a time budget) runs the references briefly.
    refs = min(cfg.throughput_seconds, 0.5) if cfg.quick else cfg.throughput_seconds
    for repeat in range(cfg.repeats):
        # Rotate the order, so a drift of the machine's load hits every side alike.
        steps: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = [
            ("worker", lambda: worker_lifecycles(ctx, 1, cfg.throughput_seconds, "tp")),
            ("ceiling", lambda: real_ceiling_lifecycles(ctx, refs)),
        ]
        if not cfg.quick:  # the quick run's budget has no room for a third side
            steps.append(("serial_sql", lambda: serial_sql_lifecycles(ctx, refs)))
        shift = repeat % len(steps)
        done = {name: await step() for name, step in steps[shift:] + steps[:shift]}
        worker, ceiling = done["worker"], done["ceiling"]
        serial = done.get("serial_sql")
        ratio = worker["transitions_per_s"] / ceiling["transitions_per_s"]
        vs_serial = worker["transitions_per_s"] / serial["transitions_per_s"] if serial else None
        pairs.append(
            {
                **done,
                "ratio": round(ratio, 4),
                "ratio_vs_serial_sql": round(vs_serial, 4) if vs_serial else None,
                "postgres_cpu_vs_ceiling": _cpu_ratio(worker, ceiling),
            }
        )
        ctx.log(
            f"  throughput run {repeat + 1}: worker {worker['transitions_per_s']}/s, "
            f"real ceiling {ceiling['transitions_per_s']}/s ({100 * ratio:.1f} %), "
            f"same SQL serial {serial['transitions_per_s'] if serial else '–'}/s "
            f"({100 * (vs_serial or 0):.0f} %); "
            f"PostgreSQL CPU ms/lifecycle: worker "
            f"{worker['database']['postgres_cpu_ms_per_lifecycle']}, ceiling "
            f"{ceiling['database']['postgres_cpu_ms_per_lifecycle']}"
        )

    def figure(side: str, *keys: str) -> dict[str, Any]:
        values = []
        for p in pairs:
            value: Any = p.get(side)
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            values.append(value)
        return stats.repeated(v for v in values if v is not None)

    return {
        "clients": cfg.clients,
        "worker_pool": cfg.worker_pool,
        "seconds": cfg.throughput_seconds,
        "worker_transitions_per_s": figure("worker", "transitions_per_s"),
        "ceiling_transitions_per_s": figure("ceiling", "transitions_per_s"),
        "serial_sql_transitions_per_s": figure("serial_sql", "transitions_per_s"),
        "ratio": stats.repeated(p["ratio"] for p in pairs),
        "ratio_vs_serial_sql": stats.repeated(p["ratio_vs_serial_sql"] for p in pairs),
        "worker_postgres_cpu_ms_per_lifecycle": figure(
            "worker", "database", "postgres_cpu_ms_per_lifecycle"
        ),
        "ceiling_postgres_cpu_ms_per_lifecycle": figure(
            "ceiling", "database", "postgres_cpu_ms_per_lifecycle"
        ),
        "worker_transactions_per_lifecycle": figure(
            "worker", "database", "transactions_per_lifecycle"
        ),
        "worker_rows_written_per_lifecycle": figure(
            "worker", "database", "rows_written_per_lifecycle"
        ),
        "duplicates": sum(p["worker"]["duplicates"] for p in pairs),
        "runs": pairs,
    }


def _cpu_ratio(worker: dict[str, Any], ceiling: dict[str, Any]) -> float | None:
    w = worker["database"]["postgres_cpu_ms_per_lifecycle"]
    c = ceiling["database"]["postgres_cpu_ms_per_lifecycle"]
    return round(w / c, 2) if c else None


async def replicas(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    by_count: dict[str, Any] = {}
    for count in cfg.replica_counts:
        runs = []
        for _ in range(cfg.replica_repeats):
            runs.append(await worker_lifecycles(ctx, count, cfg.replica_seconds, f"rep{count}"))
        by_count[str(count)] = {
            "transitions_per_s": stats.repeated(r["transitions_per_s"] for r in runs),
            "duplicates": sum(r["duplicates"] for r in runs),
            "lost_rings": sum(r["lost_rings"] for r in runs),
            "exit_codes": [c for r in runs for c in r["exit_codes"]],
            "runs": runs,
        }
        ctx.log(
            f"  replicas {count}: {by_count[str(count)]['transitions_per_s']['median']}/s, "
            f"duplicates {by_count[str(count)]['duplicates']}"
        )
    one = by_count[str(cfg.replica_counts[0])]["transitions_per_s"]["median"] or 0
    for entry in by_count.values():
        median = entry["transitions_per_s"]["median"] or 0
        entry["vs_one_worker"] = round(median / one, 3) if one else None
    return {"seconds": cfg.replica_seconds, "clients": cfg.clients, "by_workers": by_count}


# --- 3. timers at scale ---------------------------------------------------------------------


async def _sample_rss(proc: Proc, into: list[tuple[float, int]], stop: asyncio.Event) -> None:
    started = time.monotonic()
    while not stop.is_set():
        into.append((time.monotonic() - started, proc.rss()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def timers(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    n = cfg.timer_calls
    low, high = cfg.timer_spread
    async with ctx.server.database("timers") as dsn:
        conn = await asyncpg.connect(dsn)
        # iOS callees with an alert token: every missed call also sends a `missed` push (log).
        pairs = await create_pairs(conn, min(2000, n), "ios", alert_token=True)
        # Seeded by the system, the calls wake no one (only client writes NOTIFY): the worker
        # starts after the seed and finds them in its first scan, as after a restart.
        _, seed_seconds = await seed_ringing(conn, pairs, n, (low, high))
        ctx.log(f"  seeded {n:,} ringing calls by COPY in {seed_seconds:.1f} s")
        worker = await start_worker(dsn, "timers", **ctx.worker_env(pushes=False))
        samples: list[tuple[float, int]] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_rss(worker, samples, stop))
        try:
            with CpuMeter([worker]) as cpu:

                async def settled() -> bool:
                    return not await conn.fetchval(
                        "select exists (select 1 from public.calls where status = 'ringing')"
                        " or exists (select 1 from public.push_deliveries"
                        "            where status = 'pending')"
                    )

                done = await _wait_for(settled, high - seed_seconds + 60, 0.5)
        finally:
            stop.set()
            await sampler
            await worker.stop()
        lateness = [
            r["s"]
            for r in await conn.fetch(
                "select extract(epoch from ended_at - ring_deadline)::float8 as s"
                " from public.calls where end_reason = 'missed'"
            )
        ]
        left = await conn.fetchval("select count(*) from public.calls where status = 'ringing'")
        # The log provider has no fake to count at (and push_deliveries is unique per call,
        # device and kind): a call ended twice or its one `missed` push audited as sent twice
        # (each callee has one device) is the duplicate here.
        duplicates = await conn.fetchval(
            "select coalesce(sum(greatest(n - 1, 0)), 0)::int8 from (select count(*) as n"
            " from public.call_audit where event in ('call_ended', 'push_sent')"
            " group by call_id, event) x"
        )
        counts = await _table_counts(conn)
        await conn.close()
    peak = max((r for _, r in samples), default=0)
    return {
        "calls": n,
        "spread_s": [low, high],
        "seed_seconds": round(seed_seconds, 3),
        "seed_rows_per_s": round(n / seed_seconds, 1) if seed_seconds else None,
        "seed_note": "COPY as the owner (system actor, ring_deadline supplied); the AFTER trigger"
        " writes an audit row and two jobs per call; the pickup jobs are removed in the same"
        " transaction (the calls stand for calls already rung), so only timers are measured",
        "settled": done,
        "still_ringing": left,
        "duplicates": duplicates,
        "lateness": stats.latency_ms(lateness),
        "worker_rss_peak_mb": round(peak / 2**20, 1),
        "worker_rss_samples_mb": [[round(t, 1), round(r / 2**20, 1)] for t, r in samples],
        "deliveries": counts["deliveries"],
        "cpu": cpu.as_dict(),
        "lateness_samples_ms": _downsample(sorted(v * 1000 for v in lateness), 2000),
    }


def _downsample(ordered: list[float], keep: int) -> list[float]:
    """`keep` evenly spaced order statistics (for the plot), always with the max."""
    if len(ordered) <= keep:
        return [round(v, 3) for v in ordered]
    step = (len(ordered) - 1) / (keep - 1)
    return [round(ordered[round(i * step)], 3) for i in range(keep)]


def worker_figures(run: LifecycleRun) -> dict[str, Any]:
    return {
        "lifecycles": run.lifecycles,
        "ring_latency": stats.latency_ms(run.ring_latencies),
        "lost_rings": run.lost_rings,
        "errors": run.errors[:5],
    }


def nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value
