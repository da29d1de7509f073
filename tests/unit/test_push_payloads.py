"""Wire mapping of pushes (PushMessage → APNs/FCM request, response → PushResult)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from h2.config import H2Configuration
from h2.connection import H2Connection
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.adapters.push.apns_jwt import ProviderToken
from orchestrator.adapters.push.apns_payload import (
    VOIP_MAX_BYTES,
    apns_result,
    build_apns_request,
    parse_reason,
)
from orchestrator.adapters.push.fcm_payload import build_fcm_message, fcm_result, parse_retry_after
from orchestrator.adapters.push.hpack_memo import memoize_huffman
from orchestrator.config import ConfigError
from orchestrator.domain.model import EndReason, PushKind
from orchestrator.domain.push import Accepted, Permanent, Retry
from tests.fakes.messages import android, push, ring_ios

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_apns_ring_headers_and_payload() -> None:
    message = ring_ios("ok-1")
    request = build_apns_request(message, "com.example")
    assert (request.push_type, request.topic, request.priority) == ("voip", "com.example.voip", 10)
    assert request.expiration == int(message.expires_at.timestamp())
    assert request.collapse_id == str(message.call_id)
    assert orjson.loads(request.payload) == message.common_fields()
    headers = dict(request.headers("api.push.apple.com", "ok-1", "id-1", "jwt-1"))
    assert headers[":path"] == "/3/device/ok-1"
    assert headers["authorization"] == "bearer jwt-1"


def test_apns_missed_alert_is_localised() -> None:
    request = build_apns_request(push(PushKind.MISSED, video=True), "com.example")
    assert (request.push_type, request.topic) == ("alert", "com.example")
    alert = orjson.loads(request.payload)["aps"]["alert"]
    assert alert == {
        "title-loc-key": "MISSED_CALL_TITLE",
        "loc-key": "MISSED_VIDEO_CALL",
        "loc-args": ["Ada Lovelace"],
    }


def test_apns_refuses_to_build_a_stop() -> None:
    with pytest.raises(ValueError):
        build_apns_request(push(PushKind.STOP), "com.example")


@given(st.text(max_size=500))
def test_apns_payload_always_fits_whatever_the_caller_name(name: str) -> None:
    request = build_apns_request(ring_ios("ok-1", caller_name=name), "com.example")
    assert len(request.payload) <= VOIP_MAX_BYTES
    assert orjson.loads(request.payload)["caller_name"] == (name[:64] or None)  # empty: null


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (200, None, Accepted("id-1")),
        (400, "BadDeviceToken", Permanent("BadDeviceToken", prune=True)),
        (400, "DeviceTokenNotForTopic", Permanent("DeviceTokenNotForTopic", prune=True)),
        (410, "Unregistered", Permanent("Unregistered", prune=True)),
        (410, "ExpiredToken", Permanent("ExpiredToken", prune=True)),
        (400, "BadTopic", Permanent("BadTopic", prune=False)),
        (403, "InvalidProviderToken", Permanent("InvalidProviderToken", prune=False)),
        (403, "ExpiredProviderToken", Retry("ExpiredProviderToken")),
        (404, None, Permanent("http_404", prune=False)),
        (413, "PayloadTooLarge", Permanent("PayloadTooLarge", prune=False)),
        (429, "TooManyRequests", Retry("TooManyRequests")),
        (500, "InternalServerError", Retry("InternalServerError")),
        (503, None, Retry("http_503")),
    ],
)
def test_apns_result_mapping(status: int, reason: str | None, expected: object) -> None:
    assert apns_result(status, reason, "id-1") == expected


def test_apns_reason_keeps_only_apple_reason_codes() -> None:
    assert parse_reason(b'{"reason":"BadDeviceToken"}') == "BadDeviceToken"
    assert parse_reason(b'{"reason":"token abc123 is bad"}') is None  # free text never kept
    assert parse_reason(b"not json") is None
    assert parse_reason(b"") is None


def test_provider_token_is_cached_then_reminted_on_schedule_or_expiry() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    now = [1_700_000_000.0]
    token = ProviderToken(pem, "KID1234567", "TEAM123456", clock=lambda: now[0])
    first = token.current()
    header, claims = (
        jwt.get_unverified_header(first),
        jwt.decode(first, key.public_key(), ["ES256"]),
    )
    assert header["kid"] == "KID1234567" and header["alg"] == "ES256"
    assert claims == {"iss": "TEAM123456", "iat": 1_700_000_000}
    now[0] += 39 * 60
    assert token.current() == first  # Apple refuses more than one new token per 20 min
    now[0] += 60
    second = token.current()
    assert second != first
    token.invalidate(first)  # a late 403 for the old token does not discard the new one
    assert token.current() == second
    token.invalidate(second)
    assert token.current() != second


def test_provider_token_refuses_a_key_that_is_not_p256_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as err:
        ProviderToken(
            b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n", "k", "t"
        )
    assert "c2VjcmV0" not in str(err.value)


def test_fcm_ring_is_data_only_with_string_values_and_remaining_ttl() -> None:
    message = android(PushKind.RING, "ok-1", seq=3, video=True)
    message_now = message.expires_at - timedelta(seconds=12.7)
    body = build_fcm_message(message, "ok-1", message_now)["message"]
    assert body["token"] == "ok-1"
    assert body["android"] == {
        "priority": "high",
        "ttl": "12s",
        "collapse_key": str(message.call_id),
    }
    assert "notification" not in body
    assert body["data"]["seq"] == "3" and body["data"]["video"] == "true"
    assert set(body["data"]) == set(message.common_fields())
    assert all(isinstance(v, str) for v in body["data"].values())


def test_fcm_stop_and_missed() -> None:
    stop = build_fcm_message(
        android(PushKind.STOP, "ok-1", end_reason=EndReason.DECLINED), "ok-1", NOW
    )["message"]
    assert stop["android"]["ttl"] == "60s" and stop["data"]["end_reason"] == "declined"
    missed = build_fcm_message(android(PushKind.MISSED, "ok-1", video=True), "ok-1", NOW)
    notification = missed["message"]["android"]["notification"]
    assert missed["message"]["android"]["ttl"] == "86400s"
    assert notification["body_loc_key"] == "missed_video_call"
    assert notification["body_loc_args"] == ["Ada Lovelace"]


def fcm_error(status: int, rpc: str, code: str | None = None, text: str = "") -> bytes:
    error: dict[str, object] = {"code": status, "status": rpc, "message": text}
    if code:
        error["details"] = [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}
        ]
    return orjson.dumps({"error": error})


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b'{"name":"projects/p/messages/1"}', Accepted("projects/p/messages/1")),
        (404, fcm_error(404, "NOT_FOUND", "UNREGISTERED"), Permanent("UNREGISTERED", True)),
        (
            400,
            fcm_error(
                400,
                "INVALID_ARGUMENT",
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
            ),
            Permanent("INVALID_ARGUMENT", True),
        ),
        (
            400,
            fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Invalid value at 'ttl'"),
            Permanent("INVALID_ARGUMENT", False),
        ),
        (
            403,
            fcm_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"),
            Permanent("SENDER_ID_MISMATCH", True),
        ),
        (403, fcm_error(403, "PERMISSION_DENIED"), Permanent("PERMISSION_DENIED", False)),
        (401, fcm_error(401, "UNAUTHENTICATED"), Permanent("UNAUTHENTICATED", False)),
        (429, fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"), Retry("QUOTA_EXCEEDED", 2)),
        (500, fcm_error(500, "INTERNAL", "INTERNAL"), Retry("INTERNAL", 2)),
        (503, b"<html>oops</html>", Retry("http_503", 2)),
    ],
)
def test_fcm_result_mapping(status: int, body: bytes, expected: object) -> None:
    assert fcm_result(status, body, retry_after=2) == expected


def test_fcm_retry_after_seconds_or_http_date() -> None:
    assert parse_retry_after("7", NOW) == 7
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", NOW) == 30
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_the_apns_connection_codes_the_jwt_once_and_sends_the_same_bytes() -> None:
    """h2 sends `authorization` never-indexed, so its value is Huffman-coded for every push;
    the memo skips the coding of a value seen before, and the header blocks are unchanged."""
    plain = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
    memo = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
    memoize_huffman(memo.encoder)
    memoize_huffman(memo.encoder)  # idempotent
    calls: list[bytes] = []
    inner = memo.encoder.huffman_coder._coder
    real = inner.encode
    inner.encode = lambda data: calls.append(data) or real(data)
    jwt_value = "eyJ" + "x" * 300
    for conn in (plain, memo):
        conn.initiate_connection()
        conn.data_to_send()
    for i in range(20):
        message = ring_ios(f"{i:064x}")
        request = build_apns_request(message, "com.example")
        headers = request.headers("api.push.apple.com", f"{i:064x}", f"id-{i}", jwt_value)
        for conn in (plain, memo):
            conn.send_headers(conn.get_next_available_stream_id(), headers)
        assert plain.data_to_send() == memo.data_to_send()
    assert sum(1 for data in calls if data == f"bearer {jwt_value}".encode()) == 1
