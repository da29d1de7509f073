"""The engine sleeps only through the Clock port: no direct asyncio timers in engine/, and the
timer helpers it uses instead wait exactly as long as the clock says (ManualClock)."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.engine import timers
from orchestrator.testing.doubles import ManualClock

ENGINE = Path(__file__).resolve().parents[2] / "orchestrator" / "engine"
# asyncio.wait without a timeout is not a timer; these always are.
TIMER_CALLS = {"sleep", "wait_for", "timeout", "timeout_at", "call_later", "call_at"}


async def until(predicate: Callable[[], object]) -> None:
    """Let the loop run until `predicate` holds (no wall-clock waiting: ManualClock tests)."""
    for _ in range(10_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def sleeping(clock: ManualClock) -> int:
    return sum(not future.done() for _, future in clock._sleepers)


def direct_timers(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name = node.func.attr
        owner = node.func.value
        on_asyncio = isinstance(owner, ast.Name) and owner.id == "asyncio"
        with_timeout = name == "wait" and any(k.arg == "timeout" for k in node.keywords)
        timer = (on_asyncio and (name in TIMER_CALLS or with_timeout)) or name in {
            "call_later",
            "call_at",
        }
        through_the_port = name == "call_later" and ast.unparse(owner).endswith("alarms")
        if timer and not through_the_port:
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node.func)}")
    return found


def test_the_engine_uses_no_asyncio_timer_directly() -> None:
    files = [p for p in sorted(ENGINE.glob("*.py")) if p.name != "timers.py"]
    assert files
    assert [hit for p in files for hit in direct_timers(p)] == []


def test_the_scan_finds_a_direct_timer(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import asyncio\n"
        "async def f(t):\n"
        "    await asyncio.sleep(1)\n"
        "    await asyncio.wait(t, timeout=2)\n"
        "    asyncio.get_running_loop().call_later(1, print)\n"
    )
    assert len(direct_timers(bad)) == 3


async def test_within_times_out_only_when_the_clock_passes() -> None:
    clock = ManualClock()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(timers.within(clock, never, 5.0))
    await until(lambda: sleeping(clock) == 1)
    clock.advance(4.9)
    await asyncio.sleep(0)
    assert not waiting.done()
    clock.advance(0.2)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(waiting, 2)
    assert never.cancelled()


async def test_within_returns_the_result_and_wait_all_reports_the_pending() -> None:
    clock = ManualClock()
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    done.set_result(7)
    assert await timers.within(clock, done, 1.0) == 7
    slow: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    quick: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(timers.wait_all(clock, {slow, quick}, 3.0))
    quick.set_result(None)
    await until(lambda: sleeping(clock) == 1)
    clock.advance(3.0)
    assert await asyncio.wait_for(waiting, 2) == {slow}


async def test_alarms_fire_on_the_clock_and_cancel_at_drain() -> None:
    clock = ManualClock()
    alarms = timers.Alarms(clock)
    fired: list[str] = []
    alarms.call_later(1.0, lambda: fired.append("a"))
    alarms.call_later(10.0, lambda: fired.append("b"))
    await until(lambda: sleeping(clock) == 2)
    clock.advance(1.0)
    await until(lambda: fired == ["a"])
    alarms.cancel()
    clock.advance(10.0)
    await asyncio.sleep(0)
    assert fired == ["a"]
