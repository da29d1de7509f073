"""Names of the call state machine, exactly as the public contract spells them."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    RINGING = "ringing"
    ACCEPTED = "accepted"
    ENDED = "ended"


class EndReason(StrEnum):
    COMPLETED = "completed"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    MISSED = "missed"
    BUSY = "busy"
    UNREACHABLE = "unreachable"
    FAILED = "failed"
    MAX_DURATION = "max_duration"
    GLARE = "glare"
    CONNECTION_LOST = "connection_lost"  # presence: the participants are no longer in it


# Ends that leave the worker nothing to do, so their wake-up is not swept (issue 14: two claims
# per lifecycle saved). Only an accepted call ends `completed`; its end deletes every job of
# the call and creates no push (migration 20261201000300, calls_after_change). Anything left
# from before (a retrying `stop`) is due on its own timer. The SQL side is parity-tested in
# tests/integration/test_accept_job.py.
ENDS_WITHOUT_WORK = frozenset({EndReason.COMPLETED})


class Actor(StrEnum):
    CALLER = "caller"
    CALLEE = "callee"
    SYSTEM = "system"
    OPERATOR = "operator"


class PushKind(StrEnum):
    RING = "ring"
    STOP = "stop"
    MISSED = "missed"


class Platform(StrEnum):
    IOS = "ios"
    ANDROID = "android"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    PRUNED = "pruned"


class AuditEvent(StrEnum):
    CALL_CREATED = "call_created"
    CALL_ACCEPTED = "call_accepted"
    CALL_ENDED = "call_ended"
    PUSH_SENT = "push_sent"
    PUSH_FAILED = "push_failed"
    DEVICE_PRUNED = "device_pruned"
    TOKEN_ISSUED = "token_issued"
    OPERATOR_ACTION = "operator_action"
    PARTICIPANT_JOINED = "participant_joined"
    PARTICIPANT_LEFT = "participant_left"


STATUS_EVENTS = frozenset(
    {AuditEvent.CALL_CREATED, AuditEvent.CALL_ACCEPTED, AuditEvent.CALL_ENDED}
)
DEVICE_EVENTS = frozenset({AuditEvent.PUSH_SENT, AuditEvent.PUSH_FAILED, AuditEvent.DEVICE_PRUNED})
