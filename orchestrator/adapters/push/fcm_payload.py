"""PushMessage → FCM HTTP v1 message, and FCM response → PushResult. Pure functions."""

from __future__ import annotations

import math
import re
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from orchestrator.domain.model import PushKind
from orchestrator.domain.push import (
    MISSED_TTL_SECONDS,
    STOP_TTL_SECONDS,
    Accepted,
    Permanent,
    PushMessage,
    PushResult,
    Retry,
)

# Localisation keys the app ships in its strings.xml (the device formats the text).
MISSED_TITLE_LOC_KEY = "missed_call_title"
MISSED_BODY_LOC_KEY = {False: "missed_call", True: "missed_video_call"}
_REASON = re.compile(r"^[A-Z0-9_]{1,64}$")


def data_strings(fields: dict[str, str | int | bool | None]) -> dict[str, str]:
    """FCM data values must be strings; booleans as JSON spells them; null → key left out."""
    return {
        k: ("true" if v else "false") if isinstance(v, bool) else str(v)
        for k, v in fields.items()
        if v is not None
    }


def ttl_seconds(message: PushMessage, now: datetime) -> int:
    if message.kind is PushKind.RING:
        # Rounded down so that FCM never delivers a ring after its deadline.
        return max(0, math.floor((message.expires_at - now).total_seconds()))
    return STOP_TTL_SECONDS if message.kind is PushKind.STOP else MISSED_TTL_SECONDS


def build_fcm_message(message: PushMessage, token: str, now: datetime) -> dict[str, Any]:
    """ring/stop: data-only, high priority (the app rings or stops itself); missed: a
    localised notification plus the same data."""
    data = data_strings(message.common_fields())
    android: dict[str, Any] = {"priority": "high", "ttl": f"{ttl_seconds(message, now)}s"}
    if message.kind is PushKind.MISSED:
        android["notification"] = {
            "title_loc_key": MISSED_TITLE_LOC_KEY,
            "body_loc_key": MISSED_BODY_LOC_KEY[message.video],
            "body_loc_args": [data.get("caller_name", "")],
            "tag": data["call_id"],  # a resent missed-call notice replaces the first one
        }
    else:
        # Offline device: a later stop replaces the stored ring instead of queueing behind it.
        android["collapse_key"] = data["call_id"]
    return {"message": {"token": token, "data": data, "android": android}}


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - now).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), 3600.0)


def _error(body: bytes) -> tuple[str | None, str | None, str]:
    """(FcmError errorCode, google.rpc status, message) of an error response."""
    try:
        error = orjson.loads(body).get("error") if body else None
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    if not isinstance(error, dict):
        return None, None, ""
    code = None
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("FcmError"):
            code = detail.get("errorCode")
    status = error.get("status")
    return (
        code if isinstance(code, str) and _REASON.match(code) else None,
        status if isinstance(status, str) and _REASON.match(status) else None,
        str(error.get("message", "")),
    )


def _token_invalid(message: str) -> bool:
    text = message.lower()
    return "registration token" in text and ("not a valid" in text or "invalid" in text)


def fcm_result(status: int, body: bytes, retry_after: float | None = None) -> PushResult:
    if status == 200:
        try:
            name = orjson.loads(body).get("name")
        except (orjson.JSONDecodeError, AttributeError):
            name = None
        return Accepted(name if isinstance(name, str) else None)
    code, rpc_status, text = _error(body)
    reason = code or rpc_status or f"http_{status}"  # the message text is never kept
    if (status == 404 and "UNREGISTERED" in (code, rpc_status)) or (
        status == 403 and code == "SENDER_ID_MISMATCH"
    ):
        return Permanent(reason, prune=True)
    if status == 400 and "INVALID_ARGUMENT" in (code, rpc_status) and _token_invalid(text):
        return Permanent("INVALID_ARGUMENT", prune=True)
    if status in (408, 429) or status >= 500:
        return Retry(reason, retry_after)
    if 400 <= status < 500:
        return Permanent(reason, prune=False)
    return Retry(reason, retry_after)
