"""What the MQTT relay publishes for audit rows: recipients, payloads, the state rule."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from orchestrator.adapters.mqtt import relay_events as ev
from orchestrator.adapters.mqtt.publisher import parse_mqtt_url

CALLER, CALLEE, CALL = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
WHEN = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC)


def row(event_id: int, event: str, **values: Any) -> dict[str, Any]:
    base = {
        "id": event_id,
        "call_id": CALL,
        "event": event,
        "to_status": None,
        "end_reason": None,
        "call_version": None,
        "actor_id": None,
        "occurred_at": WHEN,
        "caller_id": CALLER,
        "callee_id": CALLEE,
        "readers": [CALLER, CALLEE],  # the database's answer (audit_readers)
        "now_status": "accepted",
        "now_end_reason": None,
        "now_version": 2,
    }
    return base | values


def test_recipients_are_the_databases_readers_deduplicated() -> None:
    # Which events a participant may read is decided in SQL (orchestrator.audit_readers, see
    # tests/integration/test_audit_visibility.py); the relay only follows it.
    assert ev.recipients(row(1, "token_issued", readers=[CALLER])) == [CALLER]
    assert ev.recipients(row(1, "call_ended", readers=[CALLER, CALLER])) == [CALLER]
    assert ev.recipients(row(1, "operator_action", readers=[])) == []


def test_a_row_nobody_may_read_is_not_published_at_all() -> None:
    hidden = row(2, "operator_action", readers=[], now_version=3)
    assert ev.messages_for([hidden], "v1", 60) == []


def test_an_erased_participant_gets_nothing() -> None:
    assert ev.recipients(row(1, "call_ended", readers=[None, CALLEE])) == [CALLEE]


def test_payload_has_exactly_the_contract_fields() -> None:
    status = row(7, "call_accepted", to_status="accepted", call_version=2, now_version=3)
    assert orjson.loads(ev.payload(status)) == {
        "event_id": 7,
        "call_id": str(CALL),
        "event": "call_accepted",
        "status": "accepted",
        "end_reason": None,
        "version": 2,
        "occurred_at": "2026-12-01T09:30:15.123Z",
    }
    side = row(
        8,
        "push_sent",
        call_version=1,
        now_status="ended",
        now_end_reason="completed",
        now_version=3,
    )
    body = orjson.loads(ev.payload(side))
    assert (body["status"], body["end_reason"], body["version"]) == ("ended", "completed", 3)


def test_the_state_is_published_only_when_it_is_the_latest() -> None:
    rows = [
        row(1, "call_created", to_status="ringing", call_version=1, now_version=3),
        row(2, "call_accepted", to_status="accepted", call_version=2, now_version=3),
    ]
    out = ev.messages_for(rows, "v1", 60)
    assert [m.topic for m in out] == [
        f"v1/users/{CALLER}/calls",
        f"v1/users/{CALLEE}/calls",
        f"v1/users/{CALLER}/calls",
        f"v1/users/{CALLEE}/calls",
    ]  # version 2 is older than the call's 3: no state now, the later event publishes it
    ended = row(
        3,
        "call_ended",
        to_status="ended",
        end_reason="completed",
        call_version=3,
        now_status="ended",
        now_end_reason="completed",
        now_version=3,
    )
    state = ev.messages_for([*rows, ended], "v1", 60)[-1]
    assert state.topic == f"v1/calls/{CALL}/state" and state.retain and state.expiry == 60
    assert orjson.loads(state.payload)["version"] == 3
    assert all(not m.retain for m in ev.messages_for([*rows, ended], "v1", 60)[:-1])


def test_mqtt_urls_keep_the_password_out_of_their_description() -> None:
    target = parse_mqtt_url("mqtts://relay:s%40cret@broker.example:8884")
    assert (target.host, target.port, target.tls) == ("broker.example", 8884, True)
    assert (target.username, target.password) == ("relay", "s@cret")
    assert "s@cret" not in target.describe() and "s@cret" not in repr(target)
    assert parse_mqtt_url("mqtt://localhost").port == 1883
    with pytest.raises(ValueError, match="MQTT_URL"):
        parse_mqtt_url("http://localhost")
