"""PushMessage → APNs request, and APNs response → PushResult. Pure functions (unit-tested)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from orchestrator.domain.model import PushKind
from orchestrator.domain.push import Accepted, Permanent, PushMessage, PushResult, Retry

VOIP_MAX_BYTES = 5120  # Apple's limit for VoIP pushes
ALERT_MAX_BYTES = 4096  # ... and for every other remote notification
PRIORITY_IMMEDIATE = 10
# Localisation keys the app ships in its Localizable.strings (the device formats the text).
MISSED_TITLE_LOC_KEY = "MISSED_CALL_TITLE"
MISSED_LOC_KEY = {False: "MISSED_CALL", True: "MISSED_VIDEO_CALL"}
# The token itself is dead: disable the device. (410 is always a dead token.)
PRUNE_REASONS = frozenset({"BadDeviceToken", "Unregistered", "DeviceTokenNotForTopic"})
_REASON = re.compile(r"^[A-Za-z0-9_]{1,64}$")


class PayloadTooLarge(ValueError):
    """The payload exceeds Apple's limit; sending it would only earn a 413."""


@dataclass(frozen=True, slots=True)
class ApnsRequest:
    push_type: str
    topic: str
    priority: int
    expiration: int
    collapse_id: str
    payload: bytes

    def headers(self, authority: str, token: str, apns_id: str, jwt: str) -> list[tuple[str, str]]:
        return [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", authority),
            (":path", f"/3/device/{token}"),
            ("authorization", f"bearer {jwt}"),
            ("apns-id", apns_id),
            ("apns-push-type", self.push_type),
            ("apns-topic", self.topic),
            ("apns-priority", str(self.priority)),
            ("apns-expiration", str(self.expiration)),
            ("apns-collapse-id", self.collapse_id),
            ("content-type", "application/json"),
        ]


def build_apns_request(message: PushMessage, bundle_id: str) -> ApnsRequest:
    """Ring → VoIP push (data at top level, PushKit wants no `aps`); missed → localised alert.

    `stop` never goes to iOS (a VoIP push that reports no CallKit call gets the app killed):
    the caller must not ask for it (ValueError).
    """
    fields: dict[str, Any] = dict(message.common_fields())
    if message.kind is PushKind.RING:
        push_type, topic, limit = "voip", f"{bundle_id}.voip", VOIP_MAX_BYTES
    elif message.kind is PushKind.MISSED:
        push_type, topic, limit = "alert", bundle_id, ALERT_MAX_BYTES
        fields["aps"] = {
            "alert": {
                "title-loc-key": MISSED_TITLE_LOC_KEY,
                "loc-key": MISSED_LOC_KEY[message.video],
                "loc-args": [fields["caller_name"] or ""],
            },
            "sound": "default",
            "thread-id": "missed-calls",
        }
    else:
        raise ValueError("no stop pushes on iOS")
    payload = orjson.dumps(fields)
    if len(payload) > limit:
        raise PayloadTooLarge(push_type)
    return ApnsRequest(
        push_type=push_type,
        topic=topic,
        priority=PRIORITY_IMMEDIATE,
        # Absolute unix seconds: APNs drops the push after the ring deadline / its lifetime.
        expiration=max(0, int(message.expires_at.timestamp())),
        collapse_id=str(message.call_id),  # a resent push replaces, never duplicates, on device
        payload=payload,
    )


def parse_reason(body: bytes) -> str | None:
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    reason = data.get("reason") if isinstance(data, dict) else None
    # Only Apple's short reason codes are kept: nothing else may reach logs or last_error.
    return reason if isinstance(reason, str) and _REASON.match(reason) else None


def parse_retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds <= 3600 else None


def apns_result(
    status: int, reason: str | None, apns_id: str | None, retry_after: float | None = None
) -> PushResult:
    code = reason or f"http_{status}"
    if status == 200:
        return Accepted(apns_id)
    if status == 410 or (status == 400 and reason in PRUNE_REASONS):
        return Permanent(code, prune=True)
    if status == 403 and reason == "ExpiredProviderToken":
        return Retry(code, retry_after)  # still expired after a re-mint: our clock, not the device
    if status == 429 or status >= 500:
        return Retry(code, retry_after)
    if 400 <= status < 500:
        return Permanent(code, prune=False)
    return Retry(code, retry_after)
