"""The engine's decision for each provider result, uncertain ones in particular (contract:
a ring resent at most once and only while its deadline is >= 2 s away; stop/missed never)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from orchestrator.domain.brake import NoBrake
from orchestrator.domain.model import Platform, PushKind
from orchestrator.domain.push import UNCERTAIN, Accepted, Permanent, PushMessage, Retry, Uncertain
from orchestrator.domain.work import ClaimedDelivery, OutcomeStatus
from orchestrator.engine.deliveries import Sender
from orchestrator.engine.settings import EngineSettings
from orchestrator.metrics import Metrics
from orchestrator.ports import SystemClock
from orchestrator.testing.memory_push import MemoryPushProvider
from orchestrator.testing.memory_store import MemoryStore

SETTINGS = EngineSettings(push_retry_base_seconds=0.1, push_max_attempts=5)


def _sender() -> Sender:
    provider = MemoryPushProvider("fcm")
    return Sender(
        MemoryStore(),
        {Platform.ANDROID: provider},
        SETTINGS,
        Metrics(),
        SystemClock(),
        NoBrake(),
        lambda _: None,
        set(),
    )


def _delivery(
    kind: PushKind, *, remaining: float = 30.0, attempts: int = 1, previous: str | None = None
) -> ClaimedDelivery:
    message = PushMessage(
        1,
        uuid.uuid4(),
        kind,
        1,
        datetime.now(UTC),
        None,
        "",
        False,
        Platform.ANDROID,
        "ok-token",
        None,
        None,
    )
    return ClaimedDelivery(message, attempts, "fcm", remaining, None, 0.0, previous)


def _decide(delivery: ClaimedDelivery, result: object) -> tuple[OutcomeStatus, str | None, bool]:
    outcome = _sender()._outcome(delivery, "fcm", result, 0.0)  # type: ignore[arg-type]
    return outcome.status, outcome.error, outcome.uncertain


async def test_an_uncertain_ring_is_resent_once_while_its_deadline_is_far() -> None:
    assert _decide(_delivery(PushKind.RING), Uncertain("timeout")) == (
        OutcomeStatus.RETRY,
        UNCERTAIN,
        True,
    )


async def test_an_uncertain_ring_close_to_its_deadline_counts_as_sent() -> None:
    assert _decide(_delivery(PushKind.RING, remaining=1.9), Uncertain("timeout")) == (
        OutcomeStatus.SENT,
        UNCERTAIN,
        True,
    )


@pytest.mark.parametrize("kind", [PushKind.STOP, PushKind.MISSED])
async def test_an_uncertain_stop_or_missed_is_never_resent(kind: PushKind) -> None:
    assert _decide(_delivery(kind), Uncertain("connection_lost")) == (
        OutcomeStatus.SENT,
        UNCERTAIN,
        True,
    )


async def test_the_resend_uncertain_again_is_not_sent_a_third_time() -> None:
    resend = _delivery(PushKind.RING, attempts=2, previous=UNCERTAIN)
    assert _decide(resend, Uncertain("goaway")) == (OutcomeStatus.SENT, UNCERTAIN, True)


async def test_a_resend_that_failed_cleanly_is_tried_again_then_counts_the_first() -> None:
    resend = _delivery(PushKind.RING, attempts=2, previous=UNCERTAIN)
    assert _decide(resend, Retry("ServiceUnavailable"))[:2] == (OutcomeStatus.RETRY, UNCERTAIN)
    late = _delivery(PushKind.RING, attempts=2, previous=UNCERTAIN, remaining=1.0)
    assert _decide(late, Retry("ServiceUnavailable")) == (OutcomeStatus.SENT, UNCERTAIN, True)


async def test_the_resend_accepted_or_dead_is_recorded_as_such() -> None:
    resend = _delivery(PushKind.RING, attempts=2, previous=UNCERTAIN)
    assert _decide(resend, Accepted("m"))[:2] == (OutcomeStatus.SENT, None)
    assert _decide(resend, Permanent("UNREGISTERED", prune=True))[0] is OutcomeStatus.FAILED


async def test_a_clean_failure_is_an_ordinary_retry() -> None:
    assert _decide(_delivery(PushKind.STOP), Retry("ServiceUnavailable")) == (
        OutcomeStatus.RETRY,
        "ServiceUnavailable",
        False,
    )
