"""Supervisor.stop ends every helper, even one that lost a cancel (seen on CI: Python 3.11's
asyncio.wait_for swallows a cancel that arrives as the awaited work completes, and the worker's
shutdown then waited for ever on the event source)."""

from __future__ import annotations

import asyncio

from orchestrator.engine.supervision import Supervisor
from orchestrator.ports import SystemClock


async def test_a_helper_that_swallows_its_first_cancel_is_cancelled_again() -> None:
    swallowed = 0
    started = asyncio.Event()

    async def stubborn() -> None:
        nonlocal swallowed
        started.set()
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed > 1:
                    raise
                # like the wait_for race: the cancel is lost and the loop goes on

    supervisor = Supervisor(lambda: None, SystemClock())
    task = asyncio.create_task(stubborn(), name="stubborn")
    supervisor.watch(task)
    await started.wait()  # inside its loop, so the first cancel is the one it swallows
    async with asyncio.timeout(5):
        await supervisor.stop()
    assert task.cancelled() and swallowed == 2


async def test_stop_retrieves_a_helpers_exception_and_reports_no_death() -> None:
    died: list[str] = []

    async def failing() -> None:
        raise RuntimeError("boom")

    supervisor = Supervisor(lambda: died.append("death"), SystemClock())
    supervisor.stopping = True  # an ending during shutdown is the plan, not a death
    task = asyncio.create_task(failing(), name="failing")
    supervisor.watch(task)
    await asyncio.wait({task})
    await supervisor.stop()
    assert died == [] and supervisor.fatal is None
    assert isinstance(task.exception(), RuntimeError)
