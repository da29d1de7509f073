"""NCS notices: the signature check on raw bytes and what a notice must hold to be recorded."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

import orjson
import pytest

from orchestrator.tokenserver.ncs import Notice, parse, signature_ok

SECRET = "unit-ncs-secret"
# Fixed, not uuid4(): parametrize ids must be the same in every xdist worker.
CALL = uuid.UUID("a84811df-02fd-4f82-9ee4-dd24adf67e90")


def doc(**changes: Any) -> dict[str, Any]:
    payload = {"channelName": str(CALL), "uid": 2, "platform": 2, "clientSeq": 7, "reason": 1}
    base: dict[str, Any] = {
        "noticeId": "n-1",
        "productId": 1,
        "eventType": 104,
        "notifyMs": 1_700_000_000_000,
        "sid": "s",
        "payload": payload,
    }
    for key, value in changes.items():
        if key in payload:
            base["payload"] = {**base["payload"], key: value}
        else:
            base[key] = value
    return base


def test_the_signature_is_lowercase_hex_hmac_sha256_of_the_raw_body() -> None:
    body = orjson.dumps(doc())
    good = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert signature_ok(SECRET, body, good)
    assert not signature_ok(SECRET, body, good.upper())
    assert not signature_ok(SECRET, body + b"\n", good)  # the raw bytes, not the JSON value
    assert not signature_ok(SECRET, body, None)
    assert not signature_ok("", body, hmac.new(b"", body, hashlib.sha256).hexdigest())
    assert not signature_ok(SECRET, body, "é" * 64)  # non-ASCII header: refused, no crash


def test_a_leave_is_parsed_with_its_reason_and_sequence() -> None:
    notice = parse(orjson.dumps(doc()))
    assert isinstance(notice, Notice)
    assert (notice.event_type, notice.call_id, notice.uid) == (104, CALL, 2)
    assert (notice.client_seq, notice.reason, notice.platform) == (7, 1, 2)


def test_channel_events_carry_no_uid() -> None:
    notice = parse(orjson.dumps(doc(eventType=102)))
    assert isinstance(notice, Notice) and notice.uid is None


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{", "malformed_json"),
        (b"[1]", "malformed_notice"),
        (orjson.dumps(doc(noticeId=12)), "malformed_notice"),
        (orjson.dumps(doc(productId=2)), "wrong_product"),
        (orjson.dumps(doc(productId=True)), "wrong_product"),
        (orjson.dumps(doc(eventType=110)), "unknown_event_type"),
        (orjson.dumps(doc(channelName="lobby")), "not_a_call"),
        (orjson.dumps(doc(channelName=5)), "not_a_call"),
        (orjson.dumps(doc(uid=0)), "unknown_uid"),
        (orjson.dumps(doc(uid=3)), "unknown_uid"),
        (orjson.dumps(doc(uid="1")), "unknown_uid"),
    ],
)
def test_notices_we_cannot_use_are_named(body: bytes, why: str) -> None:
    assert parse(body) == why
