"""The call page (summary, explanation, drawn timeline, deliveries, actions) and a user's calls."""

from __future__ import annotations

from typing import Any

from orchestrator.console.auth import Session
from orchestrator.console.pages import e, layout, secs, table, ts
from orchestrator.console.timeline import LANE_TITLES, Timeline, device_name

WIDTH, LEFT, ROW = 1000, 150, 34


def _tick(value: float, duration: float) -> str:
    digits = 0 if duration >= 20 else 1 if duration >= 2 else 2 if duration >= 0.2 else 3
    return f"+{value:.{digits}f}s"


def axis_svg(t: Timeline) -> str:
    """Lanes as rows, events as numbered dots on a time axis relative to created_at."""
    height = ROW * len(t.lanes) + 30
    span = WIDTH - LEFT - 50
    parts = [
        f'<svg class="axis" viewBox="0 0 {WIDTH} {height}" role="img"'
        ' aria-label="timeline of the call, lanes by participant">'
    ]
    for i, lane in enumerate(t.lanes):
        y = ROW * i + ROW // 2 + 4
        parts.append(f'<text x="4" y="{y + 4}">{e(LANE_TITLES[lane])}</text>')
        parts.append(f'<line class="lane" x1="{LEFT}" x2="{WIDTH - 10}" y1="{y}" y2="{y}"/>')
    base = ROW * len(t.lanes) + 20
    for tick in range(5):
        x = LEFT + span * tick / 4
        label = _tick(t.duration * tick / 4, t.duration)
        parts.append(f'<text x="{x - 12:.0f}" y="{base}">{label}</text>')
    last_x: dict[str, float] = {}
    for n, ev in enumerate(t.events, 1):
        x = LEFT + span * ev.offset / t.duration
        y = ROW * t.lanes.index(ev.lane) + ROW // 2 + 4
        # Events close together in one lane: shift the number sideways so both stay readable.
        crowded = x - last_x.get(ev.lane, -100.0) < 14
        label_x = last_x[ev.lane] + 14 if crowded else x - 3
        last_x[ev.lane] = label_x if crowded else x
        parts.append(
            f'<g class="k-{e(ev.kind)}"><circle cx="{x:.1f}" cy="{y}" r="7"/>'
            f'<text x="{label_x:.1f}" y="{y - 10}">{n}</text>'
            f"<title>{n}. +{ev.offset:.3f} s {e(ev.label)}</title></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def events_table(t: Timeline) -> str:
    head = "".join(f"<th>{e(LANE_TITLES[lane])}</th>" for lane in t.lanes)
    rows = []
    for n, ev in enumerate(t.events, 1):
        cells = "".join(
            f'<td class="lane-cell hit" data-lane="{e(LANE_TITLES[lane])}">{e(ev.label)}</td>'
            if lane == ev.lane
            else '<td class="lane-cell"></td>'
            for lane in t.lanes
        )
        rows.append(
            f'<tr class="event" data-kind="{e(ev.kind)}" data-lane="{e(ev.lane)}"><td>{n}</td>'
            f'<td class="mono" title="{e(ts(ev.at))}">+{ev.offset:.3f} s</td>{cells}</tr>'
        )
    return (
        f'<table class="timeline"><thead><tr><th>#</th><th>time</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def deliveries_table(deliveries: list[dict[str, Any]], created: Any) -> str:
    rows = [
        [
            e(d["kind"]),
            e(device_name(d))
            + (' <span class="badge failed">disabled</span>' if d.get("disabled_at") else ""),
            e(d["provider"]),
            f'<span class="badge {e(d["status"])}">{e(d["status"])}</span>',
            str(d["attempts"]),
            e(d.get("last_error") or "—"),
            secs((d["sent_at"] - created).total_seconds()) if d.get("sent_at") else "—",
            secs((d["acked_at"] - created).total_seconds()) if d.get("acked_at") else "—",
        ]
        for d in deliveries
    ]
    headers = ["kind", "device", "provider", "status", "attempts", "last error", "sent", "acked"]
    return table(headers, rows, "No push delivery for this call.")


def actions(call: dict[str, Any], reasons: list[str], session: Session) -> str:
    if call["status"] == "ended":
        end = '<p class="muted">The call has ended; it can no longer be ended.</p>'
    else:
        options = "".join(f'<option value="{e(r)}">{e(r)}</option>' for r in reasons)
        end = (
            f'<form class="inline" method="post" action="/console/calls/{e(call["id"])}/end"'
            ' data-confirm="End this call now?">'
            f'<input type="hidden" name="csrf_token" value="{e(session.csrf)}">'
            f'<label>Reason <select name="reason">{options}</select></label>'
            '<button class="danger" type="submit">End call</button></form>'
        )
    redrive = (
        f'<form class="inline" method="post" action="/console/calls/{e(call["id"])}/redrive">'
        f'<input type="hidden" name="csrf_token" value="{e(session.csrf)}">'
        '<button type="submit">Redrive failed deliveries</button></form>'
    )
    return f'<section id="actions"><h2>Actions</h2>{end}<p>{redrive}</p></section>'


def call_page(
    record: Any,
    t: Timeline,
    reasons: list[str],
    session: Session,
    message: str = "",
    ok: bool = True,
) -> str:
    c = record.call
    status = e(c["status"]) + (f" / {e(c['end_reason'])}" if c["end_reason"] else "")
    who = " → ".join(
        f'<a href="/console/users/{e(c[f"{r}_id"])}">{e(c[f"{r}_email"] or c[f"{r}_id"])}</a>'
        for r in ("caller", "callee")
    )
    facts = [
        ["status", f'<span class="badge {e(c["status"])}">{status}</span>'],
        ["caller → callee", who],
        ["created", e(ts(c["created_at"]))],
        ["ring deadline", e(ts(c["ring_deadline"]))],
        ["accepted", e(ts(c["accepted_at"]))],
        ["ended", e(ts(c["ended_at"]))],
        ["video / version", f"{'yes' if c['video'] else 'no'} / {c['version']}"],
    ]
    note = ""
    if message:
        note = f'<p class="message{"" if ok else " error"}" role="status">{e(message)}</p>'
    explanation = (
        f'<p class="explain" id="explanation">{e(t.explanation)}</p>'
        if t.explanation
        else '<p class="explain" id="explanation">Not ended yet.</p>'
    )
    body = (
        f"{note}<section><h2>Call <code>{e(c['id'])}</code></h2>{explanation}"
        + table(["", ""], facts, "")
        + f'</section><section id="timeline"><h2>Timeline ({len(t.events)} events)</h2>'
        + axis_svg(t)
        + events_table(t)
        + '</section><section id="deliveries"><h2>Push deliveries</h2>'
        + deliveries_table(record.deliveries, c["created_at"])
        + "</section>"
        + actions(c, reasons, session)
    )
    return layout(f"Call {c['id']}", body, session)


def user_page(user: dict[str, Any], calls: list[dict[str, Any]], session: Session) -> str:
    rows = [
        [
            f'<a href="/console/calls/{e(c["id"])}"><code>{e(c["id"])}</code></a>',
            "caller" if c["caller_id"] == user["id"] else "callee",
            f'<span class="badge {e(c["status"])}">{e(c["status"])}</span>',
            e(c["end_reason"] or "—"),
            e(ts(c["created_at"])),
        ]
        for c in calls
    ]
    body = (
        f"<section><h2>Recent calls of {e(user.get('email') or user['id'])}</h2>"
        f'<p class="muted mono">{e(user["id"])}</p>'
        + table(["call", "role", "status", "end reason", "created"], rows, "No calls.")
        + "</section>"
    )
    return layout("User", body, session)
