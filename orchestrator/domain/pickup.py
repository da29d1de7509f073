"""What the worker does with a ringing call it sees for the first time.

Order, from the contract (abuse limits): blocked → glare → busy → ring. A blocked caller's call
ends `unreachable` before anything else is looked at, so a block never merges a glare and never
tells the blocked caller that the blocker is in a call (`busy`) or missed it. Then a call first
seen after its deadline is `missed` (never rung); then glare → busy → no devices → ring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from orchestrator.domain.model import EndReason, Status


@dataclass(frozen=True, slots=True)
class OppositeCall:
    """A ringing call in the other direction (callee → caller)."""

    id: UUID
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PickupFacts:
    """`opposite` is never a call between two users where either blocked the other."""

    call_id: UUID
    status: Status
    created_at: datetime
    caller_id: UUID | None
    callee_id: UUID | None
    deadline_passed: bool
    opposite: OppositeCall | None
    callee_in_accepted_call: bool
    callee_blocked_caller: bool
    ring_capable_devices: int


@dataclass(frozen=True, slots=True)
class Skip:
    """Nothing to do: the call already left `ringing`."""


@dataclass(frozen=True, slots=True)
class Ring:
    """Ring every ring-capable device of the callee."""


@dataclass(frozen=True, slots=True)
class End:
    reason: EndReason
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Merge:
    """Glare: the survivor becomes `accepted`, the loser ends `glare` merged into it."""

    survivor: UUID
    loser: UUID


PickupDecision = Skip | Ring | End | Merge


def glare_survivor(a: OppositeCall, b: OppositeCall) -> UUID:
    """The earlier call survives; a tie goes to the lower id."""
    return min((a.created_at, a.id), (b.created_at, b.id))[1]


def decide_pickup(facts: PickupFacts) -> PickupDecision:
    if facts.status is not Status.RINGING:
        return Skip()
    if facts.caller_id is None or facts.callee_id is None:
        return End(EndReason.FAILED, {"error": "participant_missing"})
    if facts.callee_blocked_caller:
        # Recorded only in the audit detail, which no client can read.
        return End(EndReason.UNREACHABLE, {"reason": "blocked"})
    if facts.deadline_passed:
        return End(EndReason.MISSED, {"rang": False})
    if facts.opposite is not None:
        me = OppositeCall(facts.call_id, facts.created_at)
        survivor = glare_survivor(me, facts.opposite)
        loser = facts.opposite.id if survivor == facts.call_id else facts.call_id
        return Merge(survivor=survivor, loser=loser)
    if facts.callee_in_accepted_call:
        return End(EndReason.BUSY, {"reason": "callee_in_call"})
    if facts.ring_capable_devices == 0:
        return End(EndReason.UNREACHABLE, {"reason": "no_devices"})
    return Ring()
