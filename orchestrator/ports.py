"""The worker's ports: what the core needs from the outside world, as Protocols.

Adapters in `orchestrator.adapters` implement them; `orchestrator.testing` has an
in-memory version of each for fast unit tests. SystemClock, the production Clock, is here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from uuid import UUID

from orchestrator.domain.model import EndReason
from orchestrator.domain.pickup import PickupDecision, PickupFacts
from orchestrator.domain.push import PushMessage, PushResult
from orchestrator.domain.work import (
    ClaimedDelivery,
    DeliveryOutcome,
    Ended,
    Job,
    PickupResult,
    RecordResult,
)


@dataclass(frozen=True, slots=True)
class Wakeup:
    """A hint that something changed. `call_id=None` means: re-scan everything that is due.

    Wake-ups are never the source of truth: the worker always re-reads the database.
    """

    call_id: UUID | None = None
    # Set when the hint says a client ended the call (the worker counts it in its metrics).
    client_end_reason: str | None = None
    # The end reason the hint carries, whoever counts it: an end that leaves no work
    # (domain.model.ENDS_WITHOUT_WORK) is not swept.
    end_reason: str | None = None


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


class SystemClock:
    """The production Clock: the event loop's monotonic time and asyncio sleep. It lives beside
    the port because it is the port's only production implementation (tests use ManualClock)."""

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


Decide = Callable[[PickupFacts], PickupDecision]


@runtime_checkable
class CallStore(Protocol):
    """The durable state: calls, jobs (timers) and push deliveries, on the database clock.

    Every method is idempotent: recovered work runs again after a crash.
    """

    async def claim_jobs(self, call_id: UUID | None, limit: int) -> list[Job]:
        """Lease due jobs (all, or one call's) that nobody else holds."""
        ...

    async def finish_jobs(self, job_ids: list[int]) -> None: ...

    async def retry_job(self, job_id: int, error: str, delay: float) -> None: ...

    async def release(self, job_ids: list[int], delivery_ids: list[int]) -> None:
        """Give leases back (graceful shutdown) so another worker continues at once."""
        ...

    async def renew(self, job_ids: list[int], delivery_ids: list[int]) -> None: ...

    async def pickup(self, job: Job, decide: Decide) -> PickupResult:
        """Decide and apply what happens to a new call, under locks on both users."""
        ...

    async def expire_rings(self, jobs: list[Job]) -> list[Ended]:
        """End `missed` the calls whose ring deadline has passed (database clock)."""
        ...

    async def expire_accepted(self, jobs: list[Job]) -> list[Ended]:
        """End `max_duration` the accepted calls whose limit has passed."""
        ...

    async def expire_presence(self, jobs: list[Job]) -> list[Ended]:
        """End the accepted calls a participant has been absent from for the timeout
        (`connection_lost`, or `completed` when they quit); set the other timers again."""
        ...

    async def end_busy_after_accept(self, job: Job) -> list[Ended]:
        """End `busy` the other ringing calls of the two users of an accepted call."""
        ...

    async def end_call(
        self, call_id: UUID, reason: EndReason, detail: dict[str, object]
    ) -> Ended | None: ...

    async def claim_deliveries(self, call_id: UUID | None, limit: int) -> list[ClaimedDelivery]: ...

    async def record_outcomes(self, outcomes: list[DeliveryOutcome]) -> RecordResult:
        """Record provider results; end `unreachable` calls whose every ring failed."""
        ...

    async def settle_prunes(self, prune: list[int], braked: list[int]) -> None:
        """Disable the devices of `prune` deliveries (audit `device_pruned`); mark `braked`."""
        ...

    async def seconds_until_due(self) -> float | None:
        """Seconds until the next job or delivery falls due (database clock), or None."""
        ...

    async def queue_stats(self) -> tuple[int, float]:
        """(due items waiting, age in seconds of the oldest)."""
        ...

    async def ping(self) -> bool: ...
