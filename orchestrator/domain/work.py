"""The worker's units of work as pure data, shared by the engine and the store."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

from orchestrator.domain.model import EndReason, PushKind
from orchestrator.domain.pickup import PickupDecision
from orchestrator.domain.push import PushMessage


class JobKind(StrEnum):
    PICKUP = "pickup"
    RING_TIMEOUT = "ring_timeout"
    ACCEPTED = "accepted"
    MAX_DURATION = "max_duration"
    PRESENCE = "presence"


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    call_id: UUID
    kind: str  # a JobKind value; kept as text so an unknown kind is logged, not crashed on
    attempts: int


@dataclass(frozen=True, slots=True)
class Ended:
    """A call the worker ended, for logs and metrics."""

    call_id: UUID
    end_reason: EndReason
    from_status: str
    lateness: float | None = None  # ended_at − deadline, on the database clock
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A pending push leased to this worker, with what is needed to send it."""

    message: PushMessage
    attempts: int
    provider: str
    # Seconds until the push is pointless (ring deadline / expires_at), on the database clock.
    remaining: float
    # Why it must not be sent at all ("call_ended", "device_disabled", ...), or None.
    void_reason: str | None
    created_age: float  # seconds since calls.created_at at claim time (time-to-ring)
    # last_error of the previous attempt ("uncertain": that attempt may have been delivered).
    previous_error: str | None = None

    @property
    def id(self) -> int:
        return self.message.delivery_id

    @property
    def kind(self) -> PushKind:
        return self.message.kind


class OutcomeStatus(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    PRUNED = "pruned"


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    delivery_id: int
    call_id: UUID
    status: OutcomeStatus
    provider: str
    error: str | None = None
    provider_message_id: str | None = None
    retry_in: float = 0.0
    uncertain: bool = False  # this attempt's result was Uncertain (metric outcome="uncertain")


@dataclass(frozen=True, slots=True)
class PickupResult:
    decision: PickupDecision
    ended: list[Ended]
    deliveries: list[ClaimedDelivery]


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What recording a batch of provider results caused."""

    ended: list[Ended]
    # Seconds from calls.created_at to the provider accepting each ring (database clock).
    ring_latencies: list[float]
