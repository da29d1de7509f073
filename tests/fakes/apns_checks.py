"""The request checks of the fake APNs: provider JWT, topic, push type, headers, payload."""

from __future__ import annotations

import time
from typing import Any

import jwt

from tests.fakes.keys import ApnsKey

LIMITS = {"voip": 5120, "alert": 4096}  # Apple's payload limits by push type


def check_jwt(auth: str, key: ApnsKey, rejected: set[str]) -> str | None:
    if not auth.startswith("bearer "):
        return "MissingProviderToken"
    token = auth.removeprefix("bearer ")
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, key.public_key, algorithms=["ES256"])
    except jwt.PyJWTError:
        return "InvalidProviderToken"
    if header.get("kid") != key.key_id or claims.get("iss") != key.team_id:
        return "InvalidProviderToken"
    if token in rejected or claims.get("iat", 0) < time.time() - 3600:
        return "ExpiredProviderToken"
    return None


def check_request(
    h: dict[str, str], raw: bytes, body: Any, key: ApnsKey, bundle_id: str, rejected: set[str]
) -> tuple[int, str] | None:
    """What Apple checks before looking at the device token; None when all is well."""
    if h.get(":method") != "POST":
        return 405, "MethodNotAllowed"
    if not h.get(":path", "").startswith("/3/device/"):
        return 404, "BadPath"
    if problem := check_jwt(h.get("authorization", ""), key, rejected):
        return 403, problem
    push_type = h.get("apns-push-type")
    if push_type not in LIMITS:
        return 400, "InvalidPushType"
    expected = f"{bundle_id}.voip" if push_type == "voip" else bundle_id
    if h.get("apns-topic") != expected:
        return 400, "TopicDisallowed"
    if h.get("apns-priority", "10") not in ("5", "10"):
        return 400, "BadPriority"
    if not h.get("apns-expiration", "0").isdigit():
        return 400, "BadExpirationDate"
    if len(h.get("apns-collapse-id", "").encode()) > 64:
        return 400, "BadCollapseId"
    if len(raw) > LIMITS[push_type]:
        return 413, "PayloadTooLarge"
    if not isinstance(body, dict):
        return 400, "PayloadEmpty"
    if push_type == "alert" and not isinstance(body.get("aps", {}).get("alert"), dict):
        return 400, "PayloadEmpty"
    return None
