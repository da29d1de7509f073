"""5. Soak: lifecycles at a steady rate for a time box; the worker's RSS and task-count slopes
(from inside the process: bench.probe_worker), and whether time-to-ring drifts."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench import stats
from bench.db import client_pool, create_pairs
from bench.load import closed_loop, open_loop_lifecycles
from bench.procs import CpuMeter, start_worker
from bench.scenarios import Context


def _samples(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _windows(times: list[float], latencies: list[float], width: float) -> list[dict[str, Any]]:
    """Time-to-ring per window of `width` seconds: does it drift over the run?"""
    if not times:
        return []
    start = min(times)
    buckets: dict[int, list[float]] = {}
    for t, v in zip(times, latencies, strict=True):
        buckets.setdefault(int((t - start) // width), []).append(v)
    return [{"from_s": k * width, **stats.latency_ms(v)} for k, v in sorted(buckets.items())]


async def _progress(ctx: Context, probe: Path, every: float) -> None:
    """A line now and then, so that a 10-minute run is seen to be alive."""
    started = time.monotonic()
    while True:
        await asyncio.sleep(every)
        samples = _samples(probe)
        if samples:
            last = samples[-1]
            ctx.log(
                f"  soak {time.monotonic() - started:.0f} s: worker RSS "
                f"{last['rss'] / 2**20:.1f} MB, {last['tasks']} tasks"
            )


async def soak(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    probe = Path(tempfile.mkdtemp(prefix="orchestrator-bench-soak-")) / "probe.jsonl"
    async with ctx.server.database("soak") as dsn:
        conn = await asyncpg.connect(dsn)
        pairs = await create_pairs(conn, max(200, int(cfg.soak_rate * 4)), "android")
        pool = await client_pool(dsn, 16)
        worker = await start_worker(
            dsn, "soak", probe=True, BENCH_PROBE_OUT=str(probe), **ctx.worker_env()
        )
        ctx.fakes.reset()
        skipped = 0
        ticker = asyncio.create_task(_progress(ctx, probe, max(10.0, cfg.soak_seconds / 10)))
        try:
            with CpuMeter([worker]) as cpu:
                if cfg.soak_lifecycles:
                    run = await closed_loop(
                        pool, ctx.fakes.route, pairs[: cfg.clients], 1e9, limit=cfg.soak_lifecycles
                    )
                else:
                    run, skipped = await open_loop_lifecycles(
                        pool, ctx.fakes.route, pairs, cfg.soak_rate, cfg.soak_seconds
                    )
        finally:
            ticker.cancel()
            code = await worker.stop()
            await pool.close()
        calls = await conn.fetchval("select count(*) from public.calls")
        await conn.close()
    samples = _samples(probe)
    shutil.rmtree(probe.parent, ignore_errors=True)
    elapsed = max(run.finished, time.monotonic()) - run.started
    # Slopes after the warm-up (pools, caches and allocator arenas fill up first).
    warm = min(10.0, 0.2 * (samples[-1]["t"] if samples else 0.0))
    steady = [s for s in samples if s["t"] >= warm]
    rss = [(s["t"], s["rss"] / 2**20) for s in steady]
    tasks = [(s["t"], s["tasks"]) for s in steady]
    return {
        "mode": f"{cfg.soak_lifecycles} lifecycles, closed loop"
        if cfg.soak_lifecycles
        else f"{cfg.soak_rate:g} lifecycles/s for {cfg.soak_seconds:g} s",
        "seconds": round(elapsed, 1),
        "lifecycles": run.lifecycles,
        "skipped_starts": skipped,
        "lost_rings": run.lost_rings,
        "errors": run.errors[:5],
        "calls_in_database": calls,
        "rss_mb": {
            "start": round(rss[0][1], 1) if rss else None,
            "end": round(rss[-1][1], 1) if rss else None,
            "max": round(max(r for _, r in rss), 1) if rss else None,
            "slope_mb_per_min": round(stats.slope_per_minute(rss), 3),
        },
        "tasks": {
            "start": tasks[0][1] if tasks else None,
            "end": tasks[-1][1] if tasks else None,
            "max": max(t for _, t in tasks) if tasks else None,
            "slope_per_min": round(stats.slope_per_minute(tasks), 3),
        },
        "ring_latency": stats.latency_ms(run.ring_latencies),
        "ring_latency_windows": _windows(
            run.ring_times, run.ring_latencies, max(1.0, elapsed / 10)
        ),
        "duplicates": ctx.fakes.duplicates(),
        "cpu": cpu.as_dict(),
        "exit_code": code,
        "samples": [[s["t"], round(s["rss"] / 2**20, 2), s["tasks"]] for s in samples],
    }
