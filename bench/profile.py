"""The hot path's profile: pyinstrument around a worker process (bench.probe_worker) carrying
scenario 2's load (closed-loop lifecycles). The full run only."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import asyncpg

from bench.db import client_pool, create_pairs
from bench.load import closed_loop
from bench.procs import CpuMeter, start_worker
from bench.scenarios import TRANSITIONS_PER_LIFECYCLE, Context

# Frames whose self time is the event loop waiting for I/O (uvloop's C loop shows as the
# self time of asyncio.Runner.run), not work.
IDLE = {
    ("run", "asyncio/runners.py"),
    ("run_until_complete", "asyncio/base_events.py"),
    ("run_forever", "asyncio/base_events.py"),
    ("select", "selectors.py"),
}


def _idle(row: dict[str, Any]) -> bool:
    """Waiting, or the bench's own timing wrappers (bench/probe_worker.py): not the worker."""
    if row["file"].startswith("bench/"):
        return True
    return any(row["function"] == f and row["file"].endswith(p) for f, p in IDLE)


async def profile(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    folder = Path(tempfile.mkdtemp(prefix="orchestrator-bench-profile-"))
    out = folder / "worker-profile"
    async with ctx.server.database("profile") as dsn:
        conn = await asyncpg.connect(dsn)
        pairs = await create_pairs(conn, cfg.clients, "android")
        pool = await client_pool(dsn, cfg.clients)
        worker = await start_worker(
            dsn,
            "profile",
            probe=True,
            BENCH_PROFILE_OUT=str(out),
            BENCH_STORE_TIMING=str(folder / "timing.json"),
            **ctx.worker_env(),
        )
        ctx.fakes.reset()
        try:
            with CpuMeter([worker]) as cpu:
                run = await closed_loop(pool, ctx.fakes.route, pairs, cfg.profile_seconds)
        finally:
            await worker.stop(60)
            await pool.close()
        await conn.close()
    summary_path = out.with_suffix(".json")
    if not summary_path.exists():
        return {"error": "the profiled worker wrote no profile"}
    summary = json.loads(summary_path.read_text())
    text = out.with_suffix(".txt").read_text()
    target = ctx.config.out / "profile-worker.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    timing_path = folder / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {"steps": []}
    shutil.rmtree(folder, ignore_errors=True)
    total = summary["total_seconds"] or 1.0
    idle = sum(r["seconds"] for r in summary["self"] if _idle(r))
    busy = max(total - idle, 1e-9)
    top = [
        {**r, "pct_of_busy": round(100 * r["seconds"] / busy, 1)}
        for r in summary["self"]
        if not _idle(r)
    ][:15]
    return {
        "seconds": cfg.profile_seconds,
        "transitions_per_s_under_profiler": round(
            TRANSITIONS_PER_LIFECYCLE * run.lifecycles / max(run.finished - run.started, 1e-9), 1
        ),
        "sampled_seconds": round(total, 2),
        "busy_seconds": round(busy, 2),
        "top_self": top,
        "top_cumulative": [r for r in summary["cumulative"] if not _idle(r)][:25],
        "text_file": target.name,
        "lifecycles": run.lifecycles,
        "wall_by_step": [
            {**row, "per_lifecycle": round(row["calls"] / max(run.lifecycles, 1), 2)}
            for row in timing["steps"]
        ],
        "cpu": cpu.as_dict(),
    }
