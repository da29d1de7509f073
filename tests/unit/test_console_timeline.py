"""The console's pure parts: timeline order and lanes, and words for every end reason."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.console.explain import EXPLAINERS, EndFacts, explain, is_explained
from orchestrator.console.timeline import build, safe_detail
from orchestrator.console.worker_view import worker_view
from orchestrator.domain.model import EndReason
from orchestrator.metrics import Metrics

T0 = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def audit(id_: int, ms: int, event: str, actor: str = "system", **kw: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "occurred_at": at(ms),
        "actor": actor,
        "actor_id": None,
        "event": event,
        "from_status": kw.pop("from_status", None),
        "to_status": kw.pop("to_status", None),
        "end_reason": kw.pop("end_reason", None),
        "detail": kw.pop("detail", {}),
    }


def delivery(id_: int, kind: str = "ring", **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": id_,
        "device_id": uuid.uuid4(),
        "kind": kind,
        "provider": "fcm",
        "status": "sent",
        "attempts": 1,
        "last_error": None,
        "created_at": at(5),
        "sent_at": at(20),
        "acked_at": None,
        "platform": "android",
        "fingerprint": f"fp{id_:06d}",
        "disabled_at": None,
    }
    return row | kw


CALL = {
    "id": uuid.uuid4(),
    "created_at": T0,
    "ring_deadline": T0 + timedelta(seconds=45),
    "accepted_at": None,
    "ended_at": at(4000),
    "end_reason": "declined",
    "status": "ended",
}


def declined_call() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    deliveries = [
        delivery(1, acked_at=at(900)),
        delivery(2, provider="apns", platform="ios"),
        delivery(3, "stop", created_at=at(4000), sent_at=at(4100)),
    ]
    sent = {"kind": "ring", "provider": "fcm", "attempts": 1}
    rows = [
        # given out of order, with ties: the model orders by time, then audit id
        audit(6, 4000, "call_ended", "callee", end_reason="declined"),
        audit(1, 0, "call_created", "caller"),
        audit(3, 20, "push_sent", detail=sent | {"delivery_id": 2, "provider": "apns"}),
        audit(2, 20, "push_sent", detail=sent | {"delivery_id": 1}),
        audit(7, 4100, "push_sent", detail={"delivery_id": 3, "kind": "stop", "provider": "fcm"}),
        audit(5, 1500, "participant_joined", "caller", detail={"uid": 1, "source": "agora"}),
        audit(4, 1200, "token_issued", "caller", detail={"uid": 1, "expires_at": "x"}),
    ]
    return rows, deliveries


def test_events_are_in_time_order_with_lanes_and_labels() -> None:
    rows, deliveries = declined_call()
    t = build(CALL, rows, deliveries)
    kinds = [(e.kind, e.lane) for e in t.events]
    assert kinds == [
        ("call_created", "caller"),
        ("push_sent", "devices"),  # id 2 before id 3 at the same instant
        ("push_sent", "devices"),
        ("ack", "devices"),
        ("token_issued", "caller"),
        ("participant_joined", "caller"),
        ("call_ended", "callee"),
        ("push_sent", "devices"),
    ]
    offsets = [e.offset for e in t.events]
    assert offsets == sorted(offsets) and offsets[0] == 0.0 and offsets[-1] == pytest.approx(4.1)
    labels = [e.label for e in t.events]
    assert labels[1] == "Ring sent via fcm to android ·fp000001"
    assert labels[2] == "Ring sent via apns to ios ·fp000002"
    assert labels[3] == "Ring shown on android ·fp000001 (acknowledged)"
    assert labels[6] == "Ended: declined (by the callee)"
    assert labels[7].startswith("Stop sent via fcm")
    assert t.lanes == ["caller", "callee", "devices"]
    assert t.explanation == (
        "declined: the callee declined after 4.0 s of ringing;"
        " 1 of 2 devices acknowledged the ring."
    )


def test_an_ack_at_the_same_instant_as_its_send_comes_after_it() -> None:
    rows = [audit(2, 20, "push_sent", detail={"delivery_id": 1, "kind": "ring"})]
    t = build(CALL | {"end_reason": None}, rows, [delivery(1, acked_at=at(20))])
    assert [e.kind for e in t.events] == ["push_sent", "ack"]
    assert t.explanation is None


def test_unknown_events_show_generically_without_secrets() -> None:
    row = audit(1, 10, "brand_new_event", detail={"why": "because", "device_token": "abc123"})
    t = build(CALL, [row], [])
    assert t.events[0].label == "Brand new event (why=because)"
    assert "abc123" not in t.events[0].label
    assert safe_detail({"token_version": "007", "voip_token": "x"}) == "token_version=007"


def test_the_end_says_who_and_why() -> None:
    rows = [
        audit(1, 10, "call_ended", end_reason="completed", detail={"by": "presence"}),
        audit(2, 10, "call_ended", end_reason="unreachable", detail={"reason": "no_devices"}),
    ]
    labels = [e.label for e in build(CALL, rows, []).events]
    assert labels == [
        "Ended: completed (by the system: presence)",
        "Ended: unreachable (by the system: no_devices)",
    ]


def test_deliveries_without_an_audit_row_say_why_they_were_not_sent() -> None:
    pending = delivery(1, status="failed", last_error="call_ended", sent_at=None)
    t = build(CALL, [], [pending])
    assert [e.label for e in t.events] == ["Ring for android ·fp000001 not sent: call_ended"]


def test_retries_are_counted_in_the_label() -> None:
    detail = {"delivery_id": 1, "kind": "ring", "provider": "apns", "attempts": 3}
    t = build(CALL, [audit(1, 10, "push_sent", detail=detail)], [delivery(1)])
    assert t.events[0].label.endswith("(attempt 3, 2 retries)")


CATALOGUE = sorted({r.value for r in EndReason} | {"connection_lost"})


@pytest.mark.parametrize("reason", CATALOGUE)
def test_every_end_reason_is_explained_in_words(reason: str) -> None:
    assert is_explained(reason)
    text = explain(EndFacts(reason, devices=3, sent=3, acked=2, ring_timeout=45, talked_for=30))
    assert text.startswith(f"{reason}: ")
    assert "ended with reason" not in text  # not the generic fallback
    assert len(text) > len(reason) + 30


def test_the_catalogue_and_the_explainers_agree() -> None:
    assert set(CATALOGUE) <= set(EXPLAINERS)


def test_missed_reads_like_the_issue_says() -> None:
    facts = EndFacts("missed", devices=3, sent=3, acked=2, ring_timeout=45.0)
    assert explain(facts) == (
        "missed: nobody answered within 45 s; 2 of 3 devices acknowledged the ring."
    )
    assert "nothing rang" in explain(EndFacts("missed", detail={"rang": False}))


@pytest.mark.parametrize(
    ("facts", "words"),
    [
        (EndFacts("unreachable", detail={"reason": "blocked"}, devices=1), "blocked the caller"),
        (EndFacts("unreachable", detail={"reason": "no_devices"}), "no ring-capable device"),
        (EndFacts("unreachable", devices=2, failed=2), "failed permanently"),
        (EndFacts("glare", detail={"merged_into": "abc"}), "merged into call abc"),
        (EndFacts("completed", detail={"by": "presence"}, talked_for=10), "presence check"),
        (EndFacts("connection_lost", talked_for=125), "2 min 5 s"),
        (EndFacts("failed", actor="operator"), "an operator ended"),
        (EndFacts("max_duration", actor="operator", talked_for=5), "(ended by an operator)"),
        (EndFacts("someday_new"), "ended with reason 'someday_new'"),
    ],
)
def test_explanations_use_the_details(facts: EndFacts, words: str) -> None:
    assert words in explain(facts)


def test_the_worker_view_shows_only_where_a_worker_runs() -> None:
    metrics = Metrics()
    assert worker_view(metrics) is None  # `orchestrator serve`: no worker in the process
    metrics.reconciles.labels("scan").inc()  # the worker's first round, before any job
    assert worker_view(metrics) is not None
    metrics.jobs.labels("pickup", "done").inc()
    metrics.prune_brake.labels("fcm").set(1)
    metrics.prune_brake.labels("apns").set(0)
    metrics.queue_depth.set(4)
    view = worker_view(metrics)
    assert view is not None
    assert view.brake == {"fcm": True, "apns": False} and view.queue_depth == 4
