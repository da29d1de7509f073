"""A call's timeline as data: lanes, events in order, and the end explained. Pure: no I/O.

Inputs are plain rows (the console store's dicts). Every audit row becomes an event, whatever
its type (event types added later, such as presence, show up generically); deliveries add
acknowledgements and the deliveries that never produced an audit row. Device tokens are never
part of the input: a device is named by platform and a short fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.console.explain import EndFacts, explain

Row = Mapping[str, Any]
LANES = ("caller", "callee", "devices", "system", "operator")
LANE_TITLES = {
    "caller": "Caller",
    "callee": "Callee",
    "devices": "Callee's devices",
    "system": "System",
    "operator": "Operator",
}
DEVICE_EVENTS = frozenset({"push_sent", "push_failed", "device_pruned"})
SECRET_WORDS = ("token", "secret", "password", "key")


@dataclass(frozen=True, slots=True)
class Event:
    at: datetime
    offset: float  # seconds since the call's created_at
    lane: str
    kind: str  # the audit event type, or 'ack' / 'delivery'
    label: str
    actor: str
    order: tuple[int, int]  # tie-break at equal times: audit rows by id, then deliveries


@dataclass(frozen=True, slots=True)
class Timeline:
    events: list[Event]
    lanes: list[str]
    explanation: str | None
    duration: float  # seconds covered by the axis


def seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds()


def device_name(delivery: Row | None) -> str:
    if delivery is None:
        return "a device"
    if delivery.get("device_id") is None:
        return "a deleted device"
    platform = delivery.get("platform") or "device"
    return f"{platform} ·{delivery.get('fingerprint') or '?'}"


def safe_detail(detail: Mapping[str, Any]) -> str:
    """key=value pairs of an audit detail, without anything that could be a credential."""
    parts = []
    for key, value in sorted(detail.items()):
        if any(word in key.lower() for word in SECRET_WORDS) and key != "token_version":
            continue
        text = value if isinstance(value, str) else repr(value)
        parts.append(f"{key}={text[:60]}")
    return ", ".join(parts)


def _humanize(event: str) -> str:
    return event.replace("_", " ").capitalize()


def audit_label(row: Row, deliveries: Mapping[int, Row]) -> str:
    event, detail = row["event"], row.get("detail") or {}
    delivery = deliveries.get(detail.get("delivery_id", -1))
    kind = detail.get("kind", "push")
    if event == "call_created":
        return "Call placed — ringing"
    if event == "call_accepted":
        return "Answered" if row.get("actor") == "callee" else "Accepted (glare merge)"
    if event == "call_ended":
        by = {"caller": "the caller", "callee": "the callee", "operator": "an operator"}
        who = by.get(row.get("actor", ""), "the system")
        why = detail.get("by") or detail.get("reason")  # presence, blocked, delivery_failed, …
        return f"Ended: {row.get('end_reason')} (by {who}" + (f": {why})" if why else ")")
    if event in ("push_sent", "push_failed"):
        verb = "sent" if event == "push_sent" else "failed"
        provider = detail.get("provider", "?")
        text = f"{kind.capitalize()} {verb} via {provider} to {device_name(delivery)}"
        attempts = detail.get("attempts") or 0
        if attempts > 1:
            text += f" (attempt {attempts}, {attempts - 1} retr{'y' if attempts == 2 else 'ies'})"
        if detail.get("error"):
            text += f": {detail['error']}"
        return text
    if event == "device_pruned":
        return f"Device disabled after a permanent error ({detail.get('reason', '?')})"
    if event == "token_issued":
        uid, expires = detail.get("uid", "?"), detail.get("expires_at", "?")
        return f"Agora token issued (uid {uid}, expires {expires})"
    if event == "operator_action":
        action = detail.get("action", "action")
        extra = detail.get("end_reason") or (
            f"{len(detail.get('deliveries', []))} deliveries" if action == "redrive" else ""
        )
        who = row.get("actor_email") or detail.get("operator") or "?"
        return f"Operator {who}: {action}" + (f" ({extra})" if extra else "")
    if event in ("participant_joined", "participant_left"):
        verb = "Joined the channel" if event == "participant_joined" else "Left the channel"
        extra = safe_detail({k: v for k, v in detail.items() if k != "uid"})
        return verb + (f" ({extra})" if extra else "")
    extra = safe_detail(detail)
    return _humanize(event) + (f" ({extra})" if extra else "")


def audit_lane(row: Row) -> str:
    event, detail = row["event"], row.get("detail") or {}
    if event in DEVICE_EVENTS:
        return "devices"
    if event.startswith("participant_") and detail.get("uid") in (1, 2):
        return "caller" if detail["uid"] == 1 else "callee"
    actor = row.get("actor")
    return actor if actor in LANES else "system"


def _delivery_events(
    created: datetime, deliveries: Iterable[Row], audited: set[int]
) -> list[Event]:
    found = []
    for d in deliveries:
        name, kind = device_name(d), str(d["kind"]).capitalize()
        if d.get("acked_at") is not None:
            found.append(
                Event(
                    d["acked_at"],
                    seconds(d["acked_at"], created) or 0.0,
                    "devices",
                    "ack",
                    f"{kind} shown on {name} (acknowledged)",
                    "callee",
                    (1, d["id"]),
                )
            )
        if d["id"] not in audited:  # never reached a provider: say why
            status = d["status"]
            reason = f": {d['last_error']}" if d.get("last_error") else ""
            label = f"{kind} for {name} {'pending' if status == 'pending' else 'not sent'}{reason}"
            found.append(
                Event(
                    d["created_at"],
                    seconds(d["created_at"], created) or 0.0,
                    "devices",
                    "delivery",
                    label,
                    "system",
                    (1, d["id"]),
                )
            )
    return found


def end_facts(call: Row, audit: Sequence[Row], deliveries: Sequence[Row]) -> EndFacts | None:
    if call.get("end_reason") is None:
        return None
    ended = next((r for r in reversed(audit) if r["event"] == "call_ended"), None)
    rings = [d for d in deliveries if d["kind"] == "ring"]
    created, accepted, ended_at = call["created_at"], call.get("accepted_at"), call.get("ended_at")
    return EndFacts(
        end_reason=str(call["end_reason"]),
        actor=ended.get("actor") if ended else None,
        ring_timeout=seconds(call.get("ring_deadline"), created),
        rang_for=seconds(accepted or ended_at, created),
        talked_for=seconds(ended_at, accepted) if accepted else None,
        devices=len(rings),
        sent=sum(1 for d in rings if d["status"] == "sent"),
        acked=sum(1 for d in rings if d.get("acked_at") is not None),
        failed=sum(
            1
            for d in rings
            if d["status"] in ("failed", "pruned") and d.get("last_error") != "call_ended"
        ),
        detail=(ended.get("detail") or {}) if ended else {},
    )


def build(call: Row, audit: Sequence[Row], deliveries: Sequence[Row]) -> Timeline:
    created: datetime = call["created_at"]
    by_id = {d["id"]: d for d in deliveries}
    audited = {
        (r.get("detail") or {}).get("delivery_id")
        for r in audit
        if r["event"] in ("push_sent", "push_failed")
    }
    events = [
        Event(
            r["occurred_at"],
            seconds(r["occurred_at"], created) or 0.0,
            audit_lane(r),
            r["event"],
            audit_label(r, by_id),
            str(r.get("actor") or "system"),
            (0, r["id"]),
        )
        for r in audit
    ]
    events += _delivery_events(created, deliveries, {i for i in audited if isinstance(i, int)})
    events.sort(key=lambda e: (e.at, e.order))
    used = {e.lane for e in events} | {"caller", "callee"}
    facts = end_facts(call, audit, deliveries)
    last = max((e.offset for e in events), default=0.0)
    return Timeline(
        events=events,
        lanes=[lane for lane in LANES if lane in used],
        explanation=explain(facts) if facts else None,
        duration=max(last, 0.001),
    )
