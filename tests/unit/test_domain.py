"""The pure state machine: transitions table and pickup decisions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.domain.model import Actor, EndReason, Status
from orchestrator.domain.pickup import (
    End,
    Merge,
    OppositeCall,
    PickupFacts,
    Ring,
    Skip,
    decide_pickup,
    glare_survivor,
)
from orchestrator.domain.transitions import ALLOWED, is_allowed, reasons_for

NOW = datetime(2026, 12, 1, tzinfo=UTC)
PRESENCE = {EndReason.COMPLETED, EndReason.CONNECTION_LOST}  # the system's presence endings


def facts(**overrides: object) -> PickupFacts:
    base: dict[str, object] = {
        "call_id": uuid.UUID(int=5),
        "status": Status.RINGING,
        "created_at": NOW,
        "caller_id": uuid.uuid4(),
        "callee_id": uuid.uuid4(),
        "deadline_passed": False,
        "opposite": None,
        "callee_in_accepted_call": False,
        "callee_blocked_caller": False,
        "ring_capable_devices": 2,
    }
    return PickupFacts(**(base | overrides))  # type: ignore[arg-type]


def test_nothing_leaves_ended_and_nothing_returns_to_ringing() -> None:
    assert all(t.from_status is not Status.ENDED for t in ALLOWED)
    assert all(t.to_status is not Status.RINGING for t in ALLOWED)
    assert all((t.to_status is Status.ENDED) == (t.end_reason is not None) for t in ALLOWED)


@pytest.mark.parametrize(
    ("actor", "from_status", "expected"),
    [
        (Actor.CALLER, Status.RINGING, {EndReason.CANCELLED}),
        (Actor.CALLER, Status.ACCEPTED, {EndReason.COMPLETED}),
        (Actor.CALLEE, Status.RINGING, {EndReason.DECLINED, EndReason.BUSY}),
        (Actor.CALLEE, Status.ACCEPTED, {EndReason.COMPLETED}),
        (
            Actor.SYSTEM,
            Status.RINGING,
            {
                EndReason.MISSED,
                EndReason.BUSY,
                EndReason.UNREACHABLE,
                EndReason.FAILED,
                EndReason.GLARE,
            },
        ),
        (Actor.SYSTEM, Status.ACCEPTED, PRESENCE | {EndReason.MAX_DURATION, EndReason.FAILED}),
        (Actor.OPERATOR, Status.ACCEPTED, PRESENCE | {EndReason.MAX_DURATION, EndReason.FAILED}),
    ],
)
def test_end_reasons_per_actor(actor: Actor, from_status: Status, expected: set[EndReason]) -> None:
    assert reasons_for(actor, from_status) == expected


def test_who_may_accept() -> None:
    assert is_allowed(Actor.CALLEE, Status.RINGING, Status.ACCEPTED, None)
    assert is_allowed(Actor.SYSTEM, Status.RINGING, Status.ACCEPTED, None)
    assert not is_allowed(Actor.CALLER, Status.RINGING, Status.ACCEPTED, None)
    assert not is_allowed(Actor.CALLEE, Status.RINGING, Status.ACCEPTED, EndReason.BUSY)


def test_pickup_order_block_then_deadline_then_glare_then_busy_then_devices() -> None:
    """Abuse limits: a block is looked at before anything else, so a blocked caller never
    learns that the blocker is in a call (busy) or merges a glare with them."""
    opposite = OppositeCall(uuid.UUID(int=9), NOW + timedelta(seconds=1))
    everything = facts(
        deadline_passed=True,
        opposite=opposite,
        callee_in_accepted_call=True,
        callee_blocked_caller=True,
        ring_capable_devices=0,
    )
    assert decide_pickup(everything) == End(EndReason.UNREACHABLE, {"reason": "blocked"})
    busy_and_blocked = facts(callee_in_accepted_call=True, callee_blocked_caller=True)
    assert decide_pickup(busy_and_blocked) == End(EndReason.UNREACHABLE, {"reason": "blocked"})
    glare_and_blocked = facts(opposite=opposite, callee_blocked_caller=True)
    assert decide_pickup(glare_and_blocked) == End(EndReason.UNREACHABLE, {"reason": "blocked"})
    late = facts(deadline_passed=True, opposite=opposite, callee_in_accepted_call=True)
    assert decide_pickup(late) == End(EndReason.MISSED, {"rang": False})
    no_deadline = facts(opposite=opposite, callee_in_accepted_call=True, ring_capable_devices=0)
    assert isinstance(decide_pickup(no_deadline), Merge)
    busy = facts(callee_in_accepted_call=True, ring_capable_devices=0)
    assert decide_pickup(busy) == End(EndReason.BUSY, {"reason": "callee_in_call"})
    assert decide_pickup(facts(ring_capable_devices=0)) == End(
        EndReason.UNREACHABLE, {"reason": "no_devices"}
    )
    assert decide_pickup(facts()) == Ring()


def test_pickup_skips_calls_that_left_ringing_and_fails_broken_rows() -> None:
    assert decide_pickup(facts(status=Status.ENDED)) == Skip()
    assert decide_pickup(facts(callee_id=None)) == End(
        EndReason.FAILED, {"error": "participant_missing"}
    )


def test_glare_keeps_the_earlier_call_and_ties_go_to_the_lower_id() -> None:
    me = facts(call_id=uuid.UUID(int=7))
    later = OppositeCall(uuid.UUID(int=1), NOW + timedelta(milliseconds=1))
    assert decide_pickup(facts(call_id=me.call_id, opposite=later)) == Merge(
        survivor=uuid.UUID(int=7), loser=uuid.UUID(int=1)
    )
    tie = OppositeCall(uuid.UUID(int=1), NOW)
    assert decide_pickup(facts(call_id=me.call_id, opposite=tie)) == Merge(
        survivor=uuid.UUID(int=1), loser=uuid.UUID(int=7)
    )


@given(st.uuids(), st.uuids(), st.integers(-5, 5))
def test_glare_survivor_is_symmetric(a: uuid.UUID, b: uuid.UUID, offset: int) -> None:
    x = OppositeCall(a, NOW)
    y = OppositeCall(b, NOW + timedelta(milliseconds=offset))
    assert glare_survivor(x, y) == glare_survivor(y, x)
