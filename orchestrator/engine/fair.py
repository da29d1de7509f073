"""Fair sharing of a provider's send slots between calls (abuse limits).

One FIFO semaphore per provider let a single call's fan-out (thousands of devices, or its
stop/missed wave) take every slot, so another call's ring waited behind all of it. Here a call
holds at most `per_call` slots (half of them by default), a free slot goes to the waiting call
that holds the fewest, and rings go before stop/missed pushes (a ring is useless after its
deadline; a missed-call notice is not urgent). Asyncio only: no locks needed.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass(order=True)
class _Waiter:
    priority: int
    seq: int
    call: Hashable = field(compare=False)
    future: asyncio.Future[None] = field(compare=False)


class FairLimiter:
    def __init__(self, capacity: int, per_call: int | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity >= 1")
        self.capacity = capacity
        self.per_call = max(1, min(per_call or (capacity + 1) // 2, capacity))
        self.used = 0
        self.held: Counter[Hashable] = Counter()
        self._waiting: list[_Waiter] = []
        self._seq = itertools.count()

    def _eligible(self, call: Hashable) -> bool:
        return self.used < self.capacity and self.held[call] < self.per_call

    def _take(self, call: Hashable) -> None:
        self.used += 1
        self.held[call] += 1

    def _release(self, call: Hashable) -> None:
        self.used -= 1
        self.held[call] -= 1
        if self.held[call] <= 0:
            del self.held[call]
        self._grant()

    def _grant(self) -> None:
        """Hand free slots to waiters: best priority, then the call holding the fewest."""
        while self.used < self.capacity:
            candidates = [w for w in self._waiting if self.held[w.call] < self.per_call]
            if not candidates:
                return
            best = min(candidates, key=lambda w: (w.priority, self.held[w.call], w.seq))
            self._waiting.remove(best)
            self._take(best.call)
            best.future.set_result(None)

    @asynccontextmanager
    async def slot(self, call: Hashable, priority: int = 0) -> AsyncIterator[None]:
        """Hold one slot for `call` (priority 0 goes first)."""
        if self._eligible(call) and not self._waiting:
            self._take(call)
        else:
            waiter = _Waiter(
                priority, next(self._seq), call, asyncio.get_running_loop().create_future()
            )
            self._waiting.append(waiter)
            self._grant()
            try:
                await waiter.future
            except asyncio.CancelledError:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
                elif waiter.future.done() and not waiter.future.cancelled():
                    self._release(call)  # granted just as we were cancelled
                raise
        try:
            yield
        finally:
            self._release(call)
