"""What the worker's health endpoints report, and the supervision of its background tasks.

Liveness: the engine loop went round recently. Readiness: a whole sweep succeeded recently and
the last one did not fail. Supervision: a task that must live as long as the engine (lease
renewal, the event source, the MQTT relay) ending outside shutdown stops the engine, which
drains and raises BackgroundTaskDied, so the process exits non-zero and is restarted instead of
staying half alive (leases lapsing quietly, wake-ups lost, duplicates following).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from orchestrator.engine.timers import wait_all
from orchestrator.logs import exception_fields, get_logger
from orchestrator.ports import Clock

log = get_logger("orchestrator.worker")


class BackgroundTaskDied(RuntimeError):
    """A task the worker cannot live without ended."""


class Vitals:
    def __init__(self, clock: Clock, readiness_window: float, liveness_window: float) -> None:
        self.clock = clock
        self.readiness_window = readiness_window
        self.liveness_window = liveness_window
        self.progress_at = clock.monotonic()
        self.sweep_ok_at: float | None = None
        self.sweep_failing = False

    def tick(self) -> None:
        self.progress_at = self.clock.monotonic()

    def sweep_succeeded(self) -> None:
        self.sweep_ok_at, self.sweep_failing = self.clock.monotonic(), False

    def sweep_failed(self) -> None:
        self.sweep_failing = True

    def live(self) -> bool:
        return self.clock.monotonic() - self.progress_at <= self.liveness_window

    def sweeps_ok(self) -> bool:
        if self.sweep_failing or self.sweep_ok_at is None:
            return False
        return self.clock.monotonic() - self.sweep_ok_at <= self.readiness_window


class Supervisor:
    def __init__(self, on_death: Callable[[], None], clock: Clock) -> None:
        self.clock = clock
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.fatal: BackgroundTaskDied | None = None
        self.stopping = False
        self._on_death = on_death

    def watch(self, task: asyncio.Task[None]) -> None:
        self.tasks[task.get_name()] = task
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        if self.stopping or self.fatal is not None:
            return
        if task.cancelled():
            fields = {"error": "CancelledError", "detail": "cancelled", "traceback": ""}
        elif (exc := task.exception()) is not None:
            fields = exception_fields(exc)
        else:
            fields = {"error": "returned", "detail": "the task ended", "traceback": ""}
        log.error("background_task_died", task=task.get_name(), exit="draining", **fields)
        self.fatal = BackgroundTaskDied(f"background task {task.get_name()!r} died")
        self._on_death()

    async def stop(self) -> None:
        """Cancel every helper until it has ended. A cancel can be lost (a library that
        swallows it, e.g. Python 3.11's asyncio.wait_for when the awaited work completes at
        the same moment), so a helper still running a moment later is cancelled again rather
        than holding the shutdown for ever."""
        self.stopping = True
        pending: set[asyncio.Future[Any]] = set(self.tasks.values())
        while pending:
            for task in pending:
                task.cancel()
            pending = await wait_all(self.clock, pending, 0.5)
        for task in self.tasks.values():
            if not task.cancelled():
                task.exception()  # retrieved: no "exception was never retrieved" at exit
