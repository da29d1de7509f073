"""The Realtime payload parser: every payload becomes a Wakeup, and it never raises."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from realtime import RealtimePostgresChangesListenEvent, SuccessSystemPayload

from orchestrator.adapters.realtime.events import (
    backoff_delay,
    commit_lag,
    is_subscribed,
    parse_change,
)
from orchestrator.ports import Wakeup

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def payload(**data: Any) -> dict[str, Any]:
    base = {"schema": "public", "table": "calls", "type": "INSERT", "errors": None,
            "columns": [], "commit_timestamp": "2026-12-01T11:59:59.750Z"}  # fmt: skip
    return {"data": base | data, "ids": [1]}


def test_insert_and_update_wake_their_call() -> None:
    call_id = uuid.uuid4()
    for kind in ("INSERT", "UPDATE", RealtimePostgresChangesListenEvent.Update):
        change = parse_change(payload(type=kind, record={"id": str(call_id)}), NOW)
        assert change.wakeup == Wakeup(call_id) and change.problem is None
        assert change.lag == 0.25


def test_malformed_payloads_rescan() -> None:
    cases = [
        (None, "no data object"),
        ({"data": None}, "no data object"),
        (payload(table="devices", record={"id": str(uuid.uuid4())}), "change of another table"),
        (payload(type="DELETE", record={"id": str(uuid.uuid4())}), "unexpected change type"),
        (payload(), "no record"),
        (payload(record=[1]), "no record"),
        (payload(record={"id": None}), "record has no string id"),
        (payload(record={"id": "nope"}), "record id is not a uuid"),
    ]
    for value, problem in cases:
        change = parse_change(value, NOW)
        assert change.wakeup == Wakeup(None) and change.problem == problem


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)


records = st.dictionaries(st.sampled_from(["id", "status"]), st.uuids().map(str) | json_values)


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(["schema", "table", "type", "record", "commit_timestamp", "x"]),
        json_values | records | st.sampled_from(["public", "calls", "INSERT", "UPDATE"]),
    )
)
def test_never_raises_and_never_invents_a_call(data: dict[str, Any]) -> None:
    change = parse_change({"data": data, "ids": [1]}, NOW)
    if change.problem is None:
        assert change.wakeup.call_id == uuid.UUID(data["record"]["id"])
    else:
        assert change.wakeup == Wakeup(None)


def test_commit_lag() -> None:
    assert commit_lag("2026-12-01T11:59:58Z", NOW) == 2.0
    assert commit_lag("2026-12-01 11:59:59.5+00", NOW) == 0.5
    assert commit_lag("2026-12-01T11:59:59.5", NOW) == 0.5  # naive: UTC
    assert commit_lag((NOW + timedelta(seconds=3)).isoformat(), NOW) == 0.0  # clock skew
    assert commit_lag("yesterday", NOW) is None and commit_lag(12, NOW) is None


def test_only_the_postgres_subscription_counts() -> None:
    def system(**fields: str) -> SuccessSystemPayload:
        base = {"channel": "c", "extension": "postgres_changes",
                "message": "Subscribed to PostgreSQL", "status": "ok"}  # fmt: skip
        return SuccessSystemPayload(**(base | fields))

    assert is_subscribed(system())
    assert not is_subscribed(system(extension="system"))
    assert not is_subscribed(system(message="Subscribing to PostgreSQL"))
    assert not is_subscribed(None)


@given(st.integers(0, 100), st.floats(0, 1))
def test_backoff_is_bounded_with_jitter(attempt: int, rand: float) -> None:
    delay = backoff_delay(attempt, 0.5, 30.0, lambda: rand)
    ceiling = min(30.0, 0.5 * 2**attempt)
    assert ceiling / 2 <= delay <= ceiling


def test_an_end_carries_its_reason_for_the_engine() -> None:
    call_id = uuid.uuid4()
    ended = {"id": str(call_id), "status": "ended", "end_reason": "completed"}
    change = parse_change(payload(type="UPDATE", record=ended), NOW)
    assert change.wakeup == Wakeup(call_id, end_reason="completed")
    ringing = {"id": str(call_id), "status": "ringing", "end_reason": "completed"}
    assert parse_change(payload(type="UPDATE", record=ringing), NOW).wakeup == Wakeup(call_id)
    odd = {"id": str(call_id), "status": "ended", "end_reason": 7}
    assert parse_change(payload(type="UPDATE", record=odd), NOW).wakeup == Wakeup(call_id)
