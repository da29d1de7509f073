"""Running the real worker in-process against a test database, with injected short timers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from orchestrator.config import Settings
from orchestrator.domain.model import Platform
from orchestrator.engine.jobs import PickupHook
from orchestrator.testing.memory_push import MemoryPushProvider
from orchestrator.worker import WorkerHooks, run_worker

SHORT_TIMERS = {
    "RING_TIMEOUT_SECONDS": "3",
    "RECONCILE_INTERVAL_SECONDS": "1",
    "WORKER_LEASE_SECONDS": "1",
    "PUSH_RETRY_BASE_SECONDS": "0.05",
    "PRUNE_QUARANTINE_SECONDS": "0.3",
    "METRICS_PORT": "0",
    "HOST": "127.0.0.1",
    "LOG_FORMAT": "json",
    "SHUTDOWN_GRACE_SECONDS": "3",
}


@dataclass
class RunningWorker:
    provider: MemoryPushProvider
    hooks: WorkerHooks
    stop: asyncio.Event
    task: asyncio.Task[None]


def worker_settings(dsn: str, **env: str) -> Settings:
    return Settings.from_env({"DATABASE_URL": dsn, **SHORT_TIMERS, **env})


@asynccontextmanager
async def running_worker(
    dsn: str,
    *,
    pickup_hook: PickupHook | None = None,
    provider: MemoryPushProvider | None = None,
    **env: str,
) -> AsyncIterator[RunningWorker]:
    provider = provider or MemoryPushProvider("log")
    hooks = WorkerHooks(
        providers={Platform.IOS: provider, Platform.ANDROID: provider}, pickup_hook=pickup_hook
    )
    async with started_worker(worker_settings(dsn, **env), hooks) as (stop, task):
        yield RunningWorker(provider, hooks, stop, task)


@asynccontextmanager
async def started_worker(
    settings: Settings, hooks: WorkerHooks
) -> AsyncIterator[tuple[asyncio.Event, asyncio.Task[None]]]:
    """Run the worker until the block ends; enter only once it has subscribed."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop, hooks=hooks))
    started = asyncio.create_task(hooks.started.wait())
    await asyncio.wait({task, started}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if not hooks.started.is_set():
        started.cancel()
        stop.set()
        await task  # raises the worker's start-up error
        raise AssertionError("the worker did not subscribe within 15 s")
    try:
        yield stop, task
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
