"""The worker's ports: what the core needs from the outside world, as Protocols.

Adapters in `orchestrator.adapters` implement them; `orchestrator.adapters.memory` has an
in-memory version of each for fast unit tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from uuid import UUID

from orchestrator.domain.push import PushMessage, PushResult


@dataclass(frozen=True, slots=True)
class Wakeup:
    """A hint that something changed. `call_id=None` means: re-scan everything that is due.

    Wake-ups are never the source of truth: the worker always re-reads the database.
    """

    call_id: UUID | None = None


WakeSink = Callable[[Wakeup], None]


@runtime_checkable
class EventSource(Protocol):
    """Delivers wake-ups (LISTEN/NOTIFY or Supabase Realtime)."""

    name: str

    async def run(self, wake: WakeSink) -> None:
        """Run until cancelled, calling `wake` (synchronously, it never raises) per hint.

        Must call `wake(Wakeup(None))` after every (re)subscription, because a stream may have
        dropped events while it was down. Must survive outages by reconnecting on its own.
        """
        ...

    @property
    def healthy(self) -> bool:
        """True while the source is connected and subscribed (for `/readyz`)."""
        ...


@runtime_checkable
class PushProvider(Protocol):
    """One push service (APNs, FCM, or the dry-run log)."""

    name: str  # the `push_deliveries.provider` value: apns | fcm | log

    async def send(self, message: PushMessage) -> PushResult:
        """Send one push. Never raises for provider errors: returns Retry/Permanent instead.

        Must return within the provider's own timeout (a hung server is a Retry).
        """
        ...

    async def close(self) -> None: ...


@runtime_checkable
class Publisher(Protocol):
    """Fan-out of call events (MQTT)."""

    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None: ...


@runtime_checkable
class Clock(Protocol):
    """Local time for sleeping and backoff only; deadlines are decided by the database clock."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...
