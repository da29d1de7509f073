"""Who may move a call from which status to which, with which end reason.

The SQL trigger `orchestrator.transition_allowed` is the authority for clients; this table is
the same rule set in Python and `tests/integration/test_transition_parity.py` proves that the
two agree on every (actor, from, to, reason) combination.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.domain.model import Actor, EndReason, Status

R, A, E = Status.RINGING, Status.ACCEPTED, Status.ENDED


@dataclass(frozen=True, slots=True)
class Transition:
    actor: Actor
    from_status: Status
    to_status: Status
    end_reason: EndReason | None


def _ends(actor: Actor, from_status: Status, *reasons: EndReason) -> set[Transition]:
    return {Transition(actor, from_status, E, reason) for reason in reasons}


_SYSTEM_RULES: set[Transition] = (
    _ends(
        Actor.SYSTEM,
        R,
        EndReason.MISSED,
        EndReason.BUSY,
        EndReason.UNREACHABLE,
        EndReason.FAILED,
        EndReason.GLARE,
    )
    | {Transition(Actor.SYSTEM, R, A, None)}  # glare merge only
    | _ends(Actor.SYSTEM, A, EndReason.MAX_DURATION, EndReason.FAILED)
    # Presence: `completed` (detail.by = 'presence') when the user quit, else connection_lost.
    | _ends(Actor.SYSTEM, A, EndReason.COMPLETED, EndReason.CONNECTION_LOST)
)

ALLOWED: frozenset[Transition] = frozenset(
    _ends(Actor.CALLER, R, EndReason.CANCELLED)
    | _ends(Actor.CALLER, A, EndReason.COMPLETED)
    | {Transition(Actor.CALLEE, R, A, None)}
    | _ends(Actor.CALLEE, R, EndReason.DECLINED, EndReason.BUSY)
    | _ends(Actor.CALLEE, A, EndReason.COMPLETED)
    | _SYSTEM_RULES
    # An operator acts with the system's powers; the audit names them as the operator.
    | {Transition(Actor.OPERATOR, t.from_status, t.to_status, t.end_reason) for t in _SYSTEM_RULES}
)


def is_allowed(
    actor: Actor, from_status: Status, to_status: Status, end_reason: EndReason | None
) -> bool:
    """True when `actor` may move a call `from_status` → `to_status` with `end_reason`."""
    return Transition(actor, from_status, to_status, end_reason) in ALLOWED


def reasons_for(actor: Actor, from_status: Status) -> frozenset[EndReason]:
    """End reasons `actor` may use to end a call that is in `from_status`."""
    return frozenset(
        t.end_reason
        for t in ALLOWED
        if t.actor == actor and t.from_status == from_status and t.end_reason is not None
    )


def operator_reasons(status: Status, *, deadline_passed: bool) -> list[str]:
    """What an operator may end a call with: the system's reasons, minus the two that only
    the worker can state truthfully (glare needs the merged call; missed needs the deadline)."""
    reasons = reasons_for(Actor.OPERATOR, status) - {EndReason.GLARE}
    if not deadline_passed:
        reasons -= {EndReason.MISSED}
    return sorted(r.value for r in reasons)
