"""In-memory PushProvider for engine tests: records every message, answers from a script."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict, deque
from collections.abc import Iterable

from orchestrator.domain.push import Accepted, PushMessage, PushResult


class MemoryPushProvider:
    """`script(token, r1, r2, …)` queues the results for that token (then: accepted).
    `hold(token)` makes sends to it wait until `release(token)` (a slow provider)."""

    def __init__(self, name: str = "log") -> None:
        self.name = name
        self.messages: list[PushMessage] = []
        self.closed = False
        self._script: dict[str, deque[PushResult]] = defaultdict(deque)
        self._gates: dict[str, asyncio.Event] = {}

    def script(self, token: str, *results: PushResult) -> None:
        self._script[token].extend(results)

    def hold(self, token: str) -> None:
        self._gates[token] = asyncio.Event()

    def release(self, token: str) -> None:
        gate = self._gates.pop(token, None)
        if gate is not None:
            gate.set()

    async def send(self, message: PushMessage) -> PushResult:
        token = message.target_token or ""
        self.messages.append(message)
        gate = self._gates.get(token)
        if gate is not None:
            await gate.wait()
        queue = self._script.get(token)
        if queue:
            return queue.popleft()
        return Accepted(f"{self.name}-{message.delivery_id}")

    def sent_to(self, token: str) -> list[PushMessage]:
        return [m for m in self.messages if m.target_token == token]

    def counts(self) -> Counter[tuple[str, str, int]]:
        """How often each (call_id, kind, seq) was sent: duplicates show as counts > 1."""
        return Counter((str(m.call_id), m.kind.value, m.seq) for m in self.messages)

    def kinds(self, messages: Iterable[PushMessage] | None = None) -> list[str]:
        return [m.kind.value for m in (self.messages if messages is None else messages)]

    async def close(self) -> None:
        self.closed = True
