"""Fixtures for the kit's Node tests, produced by the Python side so the two cannot drift:
pushes from our own payload builders, the end-reason catalogue, problem types, SQLSTATEs."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from orchestrator.adapters.push.apns_payload import build_apns_request
from orchestrator.adapters.push.fcm_payload import build_fcm_message
from orchestrator.domain.model import EndReason, Platform, PushKind
from orchestrator.tokenserver import problems
from tests.fakes.messages import push

ROOT = Path(__file__).resolve().parents[2]
_ERRCODE = re.compile(r"errcode\s*=\s*'([0-9A-Z]{5})'")


def _pushes() -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    found: list[dict[str, Any]] = []
    cases = [
        ("apns", PushKind.RING, {"video": True}),
        ("apns", PushKind.RING, {"video": False, "caller_name": "Łukasz 李 \u2603", "seq": 7}),
        ("apns", PushKind.MISSED, {"end_reason": EndReason.MISSED, "seq": 3}),
        ("fcm", PushKind.RING, {"video": True, "seq": 1}),
        ("fcm", PushKind.RING, {"video": False, "caller_name": ""}),
        ("fcm", PushKind.STOP, {"end_reason": EndReason.DECLINED, "seq": 2}),
        ("fcm", PushKind.MISSED, {"end_reason": EndReason.CANCELLED, "seq": 2}),
    ]
    for transport, kind, kw in cases:
        platform = Platform.IOS if transport == "apns" else Platform.ANDROID
        message = push(kind, platform, **kw)  # type: ignore[arg-type]
        if transport == "apns":
            fields = orjson.loads(build_apns_request(message, "com.example.app").payload)
        else:
            fields = build_fcm_message(message, "fcm-token", now)["message"]["data"]
        found.append(
            {
                "name": f"{transport} {kind.value} {len(found)}",
                "transport": transport,
                "fields": fields,
                "expected": message.common_fields(),
            }
        )
    return found


def sqlstates() -> list[str]:
    """Every SQLSTATE the migrations raise on purpose."""
    codes: set[str] = set()
    for path in sorted((ROOT / "supabase" / "migrations").glob("*.sql")):
        codes.update(_ERRCODE.findall(path.read_text()))
    return sorted(codes)


def write_fixtures(path: Path) -> Path:
    data = {
        "endReasons": [reason.value for reason in EndReason],
        "problemTypes": {kind.slug: kind.status for kind in problems.ALL},
        "sqlstates": sqlstates(),
        "pushes": _pushes(),
    }
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    return path
