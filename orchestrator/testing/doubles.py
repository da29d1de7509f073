"""Test doubles for fast unit tests: a controllable clock, event source and publisher.
(The production clock, SystemClock, lives beside the Clock port in orchestrator.ports.)"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from orchestrator.ports import WakeSink, Wakeup


class ManualClock:
    """A clock a test moves by hand; sleepers wake when it passes their time."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, future))
        await future

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for when, future in list(self._sleepers):
            if when <= self.now and not future.done():
                future.set_result(None)
        self._sleepers = [(w, f) for w, f in self._sleepers if not f.done()]


class MemoryEventSource:
    """An event source a test feeds by hand (`emit`)."""

    name = "memory"

    def __init__(self) -> None:
        self._sink: WakeSink | None = None
        self.subscribed = asyncio.Event()

    @property
    def healthy(self) -> bool:
        return self._sink is not None

    async def run(self, wake: WakeSink) -> None:
        self._sink = wake
        wake(Wakeup(None))
        self.subscribed.set()
        try:
            await asyncio.Event().wait()
        finally:
            self._sink = None

    def emit(self, wakeup: Wakeup) -> None:
        if self._sink is not None:
            self._sink(wakeup)


@dataclass
class MemoryPublisher:
    """Records publishes (topic, payload, qos, retain) in order."""

    published: list[tuple[str, bytes, int, bool]] = field(default_factory=list)
    retained: dict[str, bytes] = field(default_factory=dict)

    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        self.published.append((topic, payload, qos, retain))
        if retain:
            self.retained[topic] = payload
