"""Runs every scenario on fresh databases, then writes latest.json, latest.md and latest.png."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import psutil

from bench import report
from bench.abuse import abuse
from bench.ambiguous import ambiguous_pushes
from bench.config import DEFAULT_OUT, REPO, BenchConfig
from bench.db import Server
from bench.fakes import Fakes
from bench.presence import presence
from bench.procs import logs_folder, remove_logs
from bench.profile import profile
from bench.push import push_throughput, token_server
from bench.scenarios import Context, replicas, throughput, time_to_ring, timers
from bench.soak import soak
from orchestrator import embedded_pg
from orchestrator.config import Settings

Scenario = Callable[[Context], Awaitable[dict[str, Any]]]
SCENARIOS: list[tuple[str, str, Scenario]] = [
    ("time_to_ring", "1. time-to-ring", time_to_ring),
    ("throughput", "2. throughput vs ceiling", throughput),
    ("timers", "3. timers at scale", timers),
    ("replicas", "4. replicas", replicas),
    ("soak", "5. soak", soak),
    ("push", "6. push throughput", push_throughput),
    ("tokens", "6. token server", token_server),
    ("ambiguous", "7. duplicates under ambiguous failures", ambiguous_pushes),
    ("presence", "8. presence: NCS endpoint and timers", presence),
    ("abuse", "9. abuse: bystander vs one account at the device cap", abuse),
]


def _say(line: str) -> None:
    print(line, flush=True)


async def _git() -> dict[str, Any]:
    async def git(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "git",
            *args,
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await proc.communicate()
        return out.decode().strip()

    try:
        return {
            "commit": await git("rev-parse", "--short", "HEAD"),
            "dirty": bool(await git("status", "--porcelain", "--untracked-files=no")),
        }
    except OSError:
        return {"commit": None, "dirty": None}


def _quiet() -> None:
    """The bench prints its own progress; the library loggers would bury it."""
    if os.environ.get("LOG_LEVEL") is None:
        logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("pgserver").setLevel(logging.WARNING)


async def _database(settings: Settings) -> tuple[str, str, embedded_pg.Stop | None]:
    if settings.database_url:
        return settings.database_url, "DATABASE_URL", None
    uri, stop = await asyncio.to_thread(embedded_pg.start)
    return uri, "embedded", stop


async def run(settings: Settings) -> int:
    _quiet()
    config = BenchConfig.from_env()
    started = time.monotonic()
    meta: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if config.quick else "full",
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cores": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "config": config.as_dict(),
        **await _git(),
    }
    _say(f"orchestrator bench ({meta['mode']} run) → {config.out}")
    dsn, source, stop_embedded = await _database(settings)
    meta["database"] = source
    server = Server(dsn)
    results: dict[str, Any] = {}
    durations: dict[str, float] = {}
    failed = False
    fakes: Fakes | None = None
    try:
        meta["postgres"] = await server.prepare()
        fakes = await Fakes.start()
        ctx = Context(config, server, fakes, _say)
        chosen = list(SCENARIOS)
        if config.profile_seconds > 0:
            chosen.append(("profile", "profile of the hot path", profile))
        if config.only:
            chosen = [c for c in chosen if c[0] in config.only]
        for key, title, scenario in chosen:
            _say(f"{title} …")
            began = time.monotonic()
            try:
                results[key] = await scenario(ctx)
            except Exception as exc:
                failed = True
                results[key] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
                _say(f"  FAILED: {type(exc).__name__}: {exc}")
                traceback.print_exc()
            durations[key] = round(time.monotonic() - began, 1)
            _say(f"  ({durations[key]} s)")
    finally:
        if fakes is not None:
            await fakes.close()
        with contextlib.suppress(Exception):
            await server.cleanup()
        if stop_embedded is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(stop_embedded)
    meta["seconds"] = round(time.monotonic() - started, 1)
    meta["scenario_seconds"] = durations
    meta["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    document = report.build(meta, results, quick=config.quick)
    paths = report.write(document, config.out)
    if not config.quick and not config.only and config.out == DEFAULT_OUT:
        report.update_readme(document, REPO / "bench" / "README.md")
    _say("")
    _say(report.summary_text(document))
    _say("wrote " + ", ".join(str(p) for p in paths))
    if failed:
        _say(f"process logs kept in {logs_folder()}")
        return 1
    remove_logs()
    return 0
