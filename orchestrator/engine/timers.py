"""Every timer of the engine goes through the Clock port (orchestrator.ports.Clock).

The engine never calls asyncio.sleep, asyncio.wait(timeout=...), asyncio.wait_for or
loop.call_later itself: a unit test with ManualClock then moves every timer of the engine by
hand, and production gets the same behaviour from SystemClock. Each helper below races the
awaited work against one `clock.sleep` task and cleans the loser up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

from orchestrator.ports import Clock

T = TypeVar("T")


async def _race(clock: Clock, tasks: Collection[asyncio.Future[Any]], seconds: float) -> bool:
    """Wait until one of `tasks` is done (True) or `seconds` pass on `clock` (False)."""
    timer = asyncio.ensure_future(clock.sleep(max(seconds, 0.0)))
    try:
        await asyncio.wait({*tasks, timer}, return_when=asyncio.FIRST_COMPLETED)
        return any(task.done() for task in tasks)
    finally:
        timer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await timer


async def wait_any(clock: Clock, tasks: Collection[asyncio.Future[Any]], seconds: float) -> bool:
    """True once any of `tasks` is done, False when `seconds` passed first."""
    if any(task.done() for task in tasks):
        return True
    return await _race(clock, tasks, seconds)


async def wait_all(
    clock: Clock, tasks: Collection[asyncio.Future[Any]], seconds: float | None
) -> set[asyncio.Future[Any]]:
    """Wait for every one of `tasks`, for `seconds` at most (None: no limit); returns those
    still pending."""
    pending = {task for task in tasks if not task.done()}
    if not pending:
        return pending
    if seconds is None:
        await asyncio.wait(pending)
        return set()
    deadline = clock.monotonic() + seconds
    while pending:
        left = deadline - clock.monotonic()
        if left <= 0 or not await _race(clock, pending, left):
            break
        pending = {task for task in pending if not task.done()}
    return pending


async def within(clock: Clock, work: Awaitable[T], seconds: float) -> T:
    """`work`'s result, or TimeoutError (work cancelled) when `seconds` pass first."""
    task = asyncio.ensure_future(work)
    try:
        if not await _race(clock, {task}, seconds):
            raise TimeoutError
    except BaseException:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise
    return task.result()


class Alarms:
    """Callbacks due later on the clock (loop.call_later through the port); cancel() at drain."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    def call_later(self, seconds: float, callback: Callable[[], None]) -> None:
        task = asyncio.create_task(self._fire(seconds, callback))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fire(self, seconds: float, callback: Callable[[], None]) -> None:
        await self.clock.sleep(seconds)
        callback()

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
