"""Turning database rows into domain objects."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import asyncpg

from orchestrator.domain.model import EndReason, Platform, PushKind, Status
from orchestrator.domain.names import clean_caller_name
from orchestrator.domain.pickup import OppositeCall, PickupFacts
from orchestrator.domain.push import PushMessage
from orchestrator.domain.work import ClaimedDelivery, Ended, Job


def job(row: asyncpg.Record) -> Job:
    return Job(id=row["id"], call_id=row["call_id"], kind=row["kind"], attempts=row["attempts"])


def facts(row: asyncpg.Record) -> PickupFacts:
    opposite = None
    if row["opposite_id"] is not None:
        opposite = OppositeCall(row["opposite_id"], row["opposite_created_at"])
    return PickupFacts(
        call_id=row["id"],
        status=Status(row["status"]),
        created_at=row["created_at"],
        caller_id=row["caller_id"],
        callee_id=row["callee_id"],
        deadline_passed=row["deadline_passed"],
        opposite=opposite,
        callee_in_accepted_call=row["callee_busy"],
        callee_blocked_caller=row["blocked"],
        ring_capable_devices=row["devices"],
    )


def delivery(row: asyncpg.Record) -> ClaimedDelivery:
    platform = Platform(row["platform"]) if row["platform"] else Platform.ANDROID
    message = PushMessage(
        delivery_id=row["id"],
        call_id=row["call_id"],
        kind=PushKind(row["kind"]),
        seq=row["seq"],
        expires_at=row["expires_at"],
        caller_id=row["caller_id"],
        caller_name=clean_caller_name(row["caller_name"]),
        video=row["video"],
        platform=platform,
        token=row["token"],
        voip_token=row["voip_token"],
        apns_environment=row["apns_environment"],
        end_reason=EndReason(row["end_reason"]) if row["end_reason"] else None,
        recipient_id=row["recipient_id"],
    )
    return ClaimedDelivery(
        message=message,
        attempts=row["attempts"],
        provider=row["provider"],
        remaining=float(row["remaining"] or 0.0),
        void_reason=row["void_reason"],  # orchestrator.delivery_void_reason decides
        created_age=float(row["created_age"] or 0.0),
        previous_error=row["last_error"],
    )


def detail_json(call_id: UUID | str, detail: dict[str, Any]) -> str:
    return json.dumps({str(call_id): detail})


def ended(
    row: asyncpg.Record, reason: EndReason, from_status: str, detail: dict[str, Any] | None = None
) -> Ended:
    lateness = row.get("lateness")
    return Ended(row["id"], reason, from_status, lateness, detail)
