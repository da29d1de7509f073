"""Honest health: a dead background task takes the worker down (drained, logged, non-zero exit),
a stuck engine loop fails /healthz, failing sweeps fail /readyz while the database answers."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from structlog.testing import capture_logs

from orchestrator import cli
from orchestrator.domain.model import Platform
from orchestrator.engine.supervision import BackgroundTaskDied
from orchestrator.testing.memory_push import MemoryPushProvider
from orchestrator.worker import WorkerHooks
from tests.support.wait import wait_for
from tests.support.worker import SHORT_TIMERS, started_worker, worker_settings

pytestmark = pytest.mark.postgres


async def _status(port: int | None, path: str) -> int:
    assert port
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status


def _hooks(**windows: float) -> WorkerHooks:
    provider = MemoryPushProvider("log")
    return WorkerHooks(providers={Platform.IOS: provider, Platform.ANDROID: provider}, **windows)


@pytest.fixture
async def conn(fresh_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(fresh_dsn)
    yield connection
    await connection.close()


@pytest.mark.parametrize("task_name", ["event-source", "lease-renewal"])
async def test_a_dead_background_task_takes_the_worker_down(fresh_dsn: str, task_name: str) -> None:
    hooks = _hooks()
    with capture_logs() as logs:
        with pytest.raises(BackgroundTaskDied, match=task_name):
            async with started_worker(worker_settings(fresh_dsn), hooks) as (_, task):
                assert hooks.engine is not None
                killed_at = time.monotonic()
                hooks.engine.supervisor.tasks[task_name].cancel()  # the test hook: kill it
                await asyncio.wait_for(asyncio.shield(task), 10)
        took = time.monotonic() - killed_at
    assert took < 5, took
    died = [e for e in logs if e["event"] == "background_task_died"]
    assert len(died) == 1 and died[0]["task"] == task_name and died[0]["log_level"] == "error"
    assert any(e["event"] == "worker_drained" for e in logs)  # drained, not just dropped


@pytest.mark.parametrize("task_name", ["event-source", "lease-renewal"])
async def test_the_worker_process_exits_non_zero_with_the_log_line(
    fresh_dsn: str, task_name: str
) -> None:
    env = {
        **os.environ,
        **SHORT_TIMERS,
        "DATABASE_URL": fresh_dsn,
        "PUSH_DRY_RUN": "1",
        "DIE_TASK": task_name,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.dying_worker",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), 30)
    events = [json.loads(line) for line in output.decode().splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert proc.returncode == 1, output.decode()[-2000:]
    assert "worker_started" in names and "worker_drained" in names
    (died,) = [e for e in events if e["event"] == "background_task_died"]
    assert died["task"] == task_name and died["level"] == "error"
    assert died["error"] == "RuntimeError" and "test hook" in died["detail"]
    assert "dying_worker.py" in died["traceback"]
    started = next(e for e in events if e["event"] == "worker_started")["timestamp"]
    took = _seconds(started, died["timestamp"])
    assert took < 10, took  # the death is noticed at once (DIE_AFTER_SECONDS = 1)
    stopped = next(e for e in events if e["event"] == "worker_stopped")["timestamp"]
    assert _seconds(died["timestamp"], stopped) < 5  # drained and gone within seconds


def _seconds(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def test_the_command_exits_non_zero_when_a_task_died(monkeypatch: pytest.MonkeyPatch) -> None:
    async def dies(*_: object, **__: object) -> None:
        raise BackgroundTaskDied("background task 'event-source' died")

    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    monkeypatch.setattr("orchestrator.worker.run_worker", dies)
    assert cli.main(["worker"]) == 1


async def test_a_stuck_loop_fails_healthz(fresh_dsn: str, conn: asyncpg.Connection) -> None:
    hooks = _hooks(liveness_window=1.5)
    async with started_worker(worker_settings(fresh_dsn), hooks):
        port = hooks.metrics_port
        assert await _status(port, "/healthz") == 200
        blocker = conn.transaction()
        await blocker.start()
        # Every claim waits on this lock: the loop is stuck in a statement, not failing.
        await conn.execute("lock table orchestrator.jobs in access exclusive mode")
        try:

            async def unhealthy() -> bool:
                return await _status(port, "/healthz") == 503

            await wait_for(unhealthy, timeout=10)
        finally:
            await blocker.rollback()

        async def healthy() -> bool:
            return await _status(port, "/healthz") == 200

        await wait_for(healthy, timeout=10)


async def test_failing_sweeps_fail_readyz_while_the_database_answers(
    fresh_dsn: str, conn: asyncpg.Connection
) -> None:
    hooks = _hooks()
    async with started_worker(worker_settings(fresh_dsn), hooks):
        port = hooks.metrics_port
        assert await _status(port, "/readyz") == 200
        await conn.execute("alter table orchestrator.jobs rename to jobs_away")
        try:

            async def unready() -> bool:
                return await _status(port, "/readyz") == 503

            await wait_for(unready, timeout=10)
            assert await _status(port, "/healthz") == 200  # alive: a restart would not help
        finally:
            await conn.execute("alter table orchestrator.jobs_away rename to jobs")

        async def ready() -> bool:
            return await _status(port, "/readyz") == 200

        await wait_for(ready, timeout=10)


async def test_not_ready_until_a_sweep_completed_within_the_window(
    fresh_dsn: str, conn: asyncpg.Connection
) -> None:
    hooks = _hooks(readiness_window=1.5)
    async with started_worker(worker_settings(fresh_dsn), hooks):
        port = hooks.metrics_port
        assert await _status(port, "/readyz") == 200
        blocker = conn.transaction()
        await blocker.start()
        await conn.execute("lock table orchestrator.jobs in access exclusive mode")
        try:

            async def unready() -> bool:
                return await _status(port, "/readyz") == 503

            await wait_for(unready, timeout=10)
        finally:
            await blocker.rollback()
