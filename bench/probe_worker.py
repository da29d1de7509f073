"""`python -m bench.probe_worker`: the real worker (`run_worker`, as `orchestrator worker` runs it,
on uvloop) plus what only the inside of the process can tell: its asyncio task count and RSS
once a second (JSON lines to $BENCH_PROBE_OUT), and optionally a pyinstrument profile of the
whole run ($BENCH_PROFILE_OUT: a .txt and a .json summary of the heaviest frames)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from orchestrator import logs
from orchestrator.cli import stop_on_signals
from orchestrator.config import Settings
from orchestrator.worker import run_worker


async def _sample(path: Path, stop: asyncio.Event) -> None:
    me = psutil.Process()
    started = time.monotonic()
    with path.open("a", buffering=1) as out:
        while not stop.is_set():
            cpu = me.cpu_times()
            out.write(
                json.dumps(
                    {
                        "t": round(time.monotonic() - started, 3),
                        "rss": me.memory_info().rss,
                        "tasks": len(asyncio.all_tasks()),
                        "cpu": round(cpu.user + cpu.system, 3),
                    }
                )
                + "\n"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


TIMED = {
    "orchestrator.adapters.postgres.store.PostgresStore": (
        "claim_jobs",
        "finish_jobs",
        "retry_job",
        "release",
        "renew",
        "pickup",
        "expire_rings",
        "expire_accepted",
        "end_busy_after_accept",
        "end_call",
        "seconds_until_due",
        "queue_stats",
        "claim_deliveries",
        "record_outcomes",
    ),
    "orchestrator.engine.deliveries.Sender": ("_one", "send_all", "_send_and_record"),
    "orchestrator.engine.recorder.Recorder": ("_write",),
    "orchestrator.engine.jobs.JobRunner": ("run",),
    "orchestrator.engine.engine.Engine": ("sweep", "_sweep_all"),
}
TIMINGS: dict[str, list[float]] = {}  # name -> [calls, seconds, max seconds]


def _timed(name: str, method: Any) -> Any:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            took = time.perf_counter() - started
            entry = TIMINGS.setdefault(name, [0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += took
            entry[2] = max(entry[2], took)

    return wrapper


def _install_timers() -> None:
    """Wall time of every store call and engine step, counted in this process only (the
    classes are wrapped here, in the bench's probe; the repository's code is unchanged)."""
    import importlib

    for dotted, names in TIMED.items():
        module_name, _, class_name = dotted.rpartition(".")
        cls = getattr(importlib.import_module(module_name), class_name, None)
        for name in names:
            method = getattr(cls, name, None)
            if method is not None:  # the engine changes; time what exists
                setattr(cls, name, _timed(f"{class_name}.{name}", method))


def _write_timings(path: Path, seconds: float) -> None:
    rows = [
        {
            "step": name,
            "calls": int(calls),
            "wall_s": round(total, 3),
            "ms_per_call": round(1000 * total / calls, 3) if calls else 0.0,
            "max_ms": round(1000 * peak, 1),
        }
        for name, (calls, total, peak) in sorted(
            TIMINGS.items(), key=lambda kv: kv[1][1], reverse=True
        )
    ]
    path.write_text(json.dumps({"seconds": round(seconds, 2), "steps": rows}, indent=1))


async def _main(settings: Settings) -> None:
    stop = stop_on_signals()
    sampler = None
    if probe := os.environ.get("BENCH_PROBE_OUT"):
        sampler = asyncio.create_task(_sample(Path(probe), stop))
    try:
        await run_worker(settings, stop)
    finally:
        stop.set()
        if sampler is not None:
            await sampler


def _frames(session: Any, top: int = 25) -> list[dict[str, Any]]:
    """Self time per function (summed over the call tree), heaviest first."""
    root = session.root_frame()
    total = root.time if root is not None else 0.0
    own: dict[tuple[str, str, int], float] = {}
    cumulative: dict[tuple[str, str, int], float] = {}

    def walk(frame: Any, seen: frozenset[tuple[str, str, int]]) -> None:
        if frame.is_synthetic_leaf:  # [self]/[await]: already in the parent's total_self_time
            return
        if frame.is_synthetic:  # the dummy root
            for child in frame.children:
                walk(child, seen)
            return
        key = (frame.function or "?", frame.file_path_short or "?", frame.line_no or 0)
        own[key] = own.get(key, 0.0) + frame.total_self_time
        if key not in seen:  # recursion counts once
            cumulative[key] = cumulative.get(key, 0.0) + frame.time
        for child in frame.children:
            walk(child, seen | {key})

    if root is not None:
        walk(root, frozenset())

    def rows(table: dict[tuple[str, str, int], float]) -> list[dict[str, Any]]:
        ranked = sorted(table.items(), key=lambda kv: kv[1], reverse=True)[:top]
        return [
            {
                "function": f,
                "file": p,
                "line": line,
                "seconds": round(s, 3),
                "pct": round(100 * s / total, 1) if total else 0.0,
            }
            for (f, p, line), s in ranked
        ]

    return [{"total_seconds": round(total, 3), "self": rows(own), "cumulative": rows(cumulative)}]


def main() -> int:
    settings = Settings.from_env()
    logs.configure(settings.log_format, settings.log_level)
    import uvloop

    timings = os.environ.get("BENCH_STORE_TIMING")
    if timings:
        _install_timers()
    profile_out = os.environ.get("BENCH_PROFILE_OUT")
    profiler: Any = None
    if profile_out:
        from pyinstrument import Profiler
        from pyinstrument.stack_sampler import get_stack_sampler

        # CPU time, not wall time: uvloop waits for I/O in C, so a wall-clock profile would
        # charge the idle time to whichever coroutine suspended last.
        get_stack_sampler().timer_func = time.process_time
        profiler = Profiler(interval=0.001, async_mode="disabled")
        profiler.start()
    started = time.monotonic()
    try:
        uvloop.run(_main(settings))
    finally:
        if timings:
            _write_timings(Path(timings), time.monotonic() - started)
        if profiler is not None and profile_out:
            session = profiler.stop()
            out = Path(profile_out)
            tree = profiler.output_text(unicode=True, color=False, show_all=False)
            flat = profiler.output_text(unicode=True, color=False, flat=True)
            out.with_suffix(".txt").write_text(f"{flat}\n\n{tree}")
            out.with_suffix(".json").write_text(json.dumps(_frames(session)[0], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
