"""What the MQTT relay publishes for audit rows: recipients, topics and payloads.

Visibility is call_audit's RLS rule itself: every row comes with `readers`, computed by the SQL
function `orchestrator.audit_readers` that the RLS policy calls (status and presence events:
both participants; `token_issued`: its user; device events: the callee; `operator_action`:
nobody). A row nobody may read is not published at all. Payloads carry exactly `event_id`,
`call_id`, `event`, `status`, `end_reason`, `version`, `occurred_at`: never device ids, tokens
or audit detail.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson

from orchestrator.domain.push import rfc3339

STATUS_EVENTS = frozenset({"call_created", "call_accepted", "call_ended"})
Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One MQTT message; `expiry` (seconds, MQTT 5) lets the broker drop an old retained state."""

    topic: str
    payload: bytes
    retain: bool = False
    expiry: int | None = None


def user_topic(prefix: str, user_id: UUID) -> str:
    return f"{prefix}/users/{user_id}/calls"


def state_topic(prefix: str, call_id: UUID) -> str:
    return f"{prefix}/calls/{call_id}/state"


def status_topic(prefix: str, worker_id: str) -> str:
    return f"{prefix}/workers/{worker_id}/status"


def recipients(row: Row) -> list[UUID]:
    """Who may read this event: the database's answer (`readers`), never decided here."""
    return list(dict.fromkeys(u for u in row["readers"] or () if u is not None))


def values(row: Row) -> tuple[str, str | None, int]:
    """(status, end_reason, version): after the event for status events, else the call's now."""
    if row["event"] in STATUS_EVENTS and row["call_version"] is not None:
        return str(row["to_status"]), row["end_reason"], int(row["call_version"])
    return str(row["now_status"]), row["now_end_reason"], int(row["now_version"])


def payload(row: Row, state: tuple[str, str | None, int] | None = None) -> bytes:
    status, end_reason, version = state or values(row)
    return orjson.dumps(
        {
            "event_id": int(row["id"]),
            "call_id": str(row["call_id"]),
            "event": row["event"],
            "status": status,
            "end_reason": end_reason,
            "version": version,
            "occurred_at": rfc3339(row["occurred_at"]),
        }
    )


def state_message(row: Row, prefix: str, ended_ttl: int | None) -> Outgoing:
    status = values(row)[0]
    return Outgoing(
        state_topic(prefix, row["call_id"]),
        payload(row),
        retain=True,
        expiry=ended_ttl if status == "ended" and ended_ttl else None,
    )


def messages_for(rows: Iterable[Row], prefix: str, ended_ttl: int | None) -> list[Outgoing]:
    """User-topic messages in id order, and per call one retained state after its last row.

    The state is published only when its version is the call's version as read with the page:
    a state older than what the database holds now is skipped (the later event that made it
    older publishes the newer one), so the retained state never goes backwards.
    """
    rows = [row for row in rows if recipients(row)]  # hidden from both: not published at all
    last = {row["call_id"]: index for index, row in enumerate(rows)}
    out: list[Outgoing] = []
    for index, row in enumerate(rows):
        body = payload(row)
        out.extend(Outgoing(user_topic(prefix, user), body) for user in recipients(row))
        if last[row["call_id"]] == index and values(row)[2] >= int(row["now_version"]):
            out.append(state_message(row, prefix, ended_ttl))
    return out


def open_state_messages(rows: Iterable[Row], prefix: str) -> list[Outgoing]:
    """The retained state of calls that have not ended (after a (re)connect): values of now."""
    return [state_message(row, prefix, None) for row in rows]
