"""Server-rendered pages: the layout, sign-in, "now", and errors. Everything is escaped here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from typing import Any

from orchestrator.console.auth import Session
from orchestrator.console.worker_view import WorkerView
from orchestrator.domain.push import rfc3339


def e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def ts(value: datetime | None) -> str:
    return rfc3339(value) if value else "—"


def secs(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str, cls: str = "") -> str:
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="muted">{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def layout(
    title: str, body: str, session: Session | None, *, head: str = "", attrs: str = ""
) -> str:
    nav = ""
    if session is not None:
        who = e(session.operator.email or session.operator.user_id)
        nav = (
            '<nav><a href="/console">Now</a></nav>'
            '<form class="inline" method="get" action="/console/find">'
            '<input name="q" aria-label="call id, user id or email" size="28"'
            ' placeholder="call id, user id or email" required>'
            '<button type="submit">Find</button></form>'
            f'<span class="who">signed in as {who}</span>'
            '<form method="post" action="/console/logout">'
            f'<input type="hidden" name="csrf_token" value="{e(session.csrf)}">'
            '<button type="submit">Sign out</button></form>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} · call console</title>"
        '<link rel="stylesheet" href="/console/static/console.css">'
        f'<script src="/console/static/console.js" defer></script>{head}</head>'
        f"<body{attrs}><header><h1>Call console</h1>{nav}</header><main>{body}</main></body></html>"
    )


def signin(supabase_url: str, anon_key: str | None, message: str = "") -> str:
    password = ""
    if anon_key:
        password = (
            '<form id="signin-password"><label>Email <input name="email" type="email"'
            ' autocomplete="username" required></label><label>Password <input name="password"'
            ' type="password" autocomplete="current-password" required></label>'
            '<button type="submit">Sign in with Supabase</button></form>'
        )
    body = (
        '<div class="signin"><section><h2>Operator sign-in</h2>'
        f'<p id="signin-message" class="muted" role="status">{e(message)}</p>{password}'
        "<details><summary>Sign in with an access token</summary>"
        '<form id="signin-token"><label>Access token <textarea name="access_token" rows="4"'
        ' required></textarea></label><button type="submit">Sign in</button></form></details>'
        "<noscript><p>Signing in needs JavaScript (the token goes in a header, never a URL);"
        " the pages themselves work without it.</p></noscript></section></div>"
    )
    attrs = f' data-supabase-url="{e(supabase_url)}" data-anon-key="{e(anon_key or "")}"'
    return layout("Sign in", body, None, attrs=attrs)


def _brake_rows(brake: list[dict[str, Any]], minimum: int, ratio: float) -> list[list[str]]:
    rows = []
    for b in brake:
        results, candidates = int(b["results"]), int(b["candidates"])
        engaged = b["braked"] > 0 or (
            candidates >= minimum and candidates > ratio * max(results, 1)
        )
        state = '<span class="badge engaged">engaged</span>' if engaged else "off"
        rows.append([e(b["provider"]), str(results), str(candidates), state])
    return rows


def _worker_note(worker: WorkerView | None) -> tuple[str, str]:
    if worker is None:
        return "", ""
    engaged = sorted(p for p, on in worker.brake.items() if on)
    state = f"engaged for {', '.join(engaged)}" if engaged else "off for every provider"
    return (
        f'<p id="worker-brake">The worker in this process: brake {e(state)}.</p>',
        f'<p id="worker-queue">The worker in this process: {worker.queue_depth:.0f} due,'
        f" oldest {secs(worker.queue_age)}.</p>",
    )


def now_fragment(
    snap: dict[str, Any], brake_min: int, brake_ratio: float, worker: WorkerView | None = None
) -> str:
    brake_note, queue_note = _worker_note(worker)
    live = [
        [
            f'<a href="/console/calls/{e(c["id"])}"><code>{e(c["id"])}</code></a>',
            f'<span class="badge {e(c["status"])}">{e(c["status"])}</span>',
            secs(c["age"]),
            f'<a href="/console/users/{e(c["caller_id"])}">caller</a> → '
            f'<a href="/console/users/{e(c["callee_id"])}">callee</a>',
        ]
        for c in snap["live"]
    ]
    ttr = [
        [e(r["provider"]), str(r["rings"]), secs(r["p50"]), secs(r["p95"])]
        for r in snap["time_to_ring"]
    ]
    outcomes = [
        [e(r["provider"]), e(r["kind"]), e(r["outcome"]), str(r["n"])] for r in snap["outcomes"]
    ]
    q = snap["queue"]
    queue = [
        ["push deliveries pending", str(q.get("pending", 0)), secs(q.get("pending_oldest"))],
        ["jobs due", str(q.get("jobs_due", 0)), secs(q.get("jobs_oldest"))],
    ]
    return (
        f'<section id="live"><h2>Ringing and in progress ({len(live)})</h2>'
        + table(["call", "status", "age", "who"], live, "No call is ringing or in progress.")
        + '</section><div class="grid"><section id="time-to-ring"><h2>Time to ring, last hour</h2>'
        + table(["provider", "rings", "p50", "p95"], ttr, "No ring sent in the last hour.")
        + '</section><section id="outcomes"><h2>Push outcomes, last hour</h2>'
        + table(["provider", "kind", "outcome", "count"], outcomes, "No push in the last hour.")
        + '</section><section id="brake"><h2>Prune brake (last 5 min)</h2>'
        + table(
            ["provider", "results", "prune candidates", "brake"],
            _brake_rows(snap["brake"], brake_min, brake_ratio),
            "No push results in the last 5 minutes.",
        )
        + f'<p class="muted">engages at ≥ {brake_min} candidates and > {brake_ratio:.0%}'
        " of results</p>"
        + brake_note
        + '</section><section id="queue"><h2>Queue</h2>'
        + table(["what", "count", "oldest"], queue, "")
        + queue_note
        + f'<p class="muted">database time {e(ts(snap["db_now"]))}</p></section></div>'
    )


def now_page(fragment: str, session: Session) -> str:
    body = (
        '<p class="muted">Refreshes every 5 s <span id="refreshed"></span></p>'
        f'<div id="now" data-refresh="/console/now/fragment" data-every="5000">{fragment}</div>'
    )
    return layout(
        "Now", body, session, head='<noscript><meta http-equiv="refresh" content="30"></noscript>'
    )


def error(status: int, text: str, session: Session | None) -> str:
    body = f'<section><h2>{status}</h2><p>{e(text)}</p><p><a href="/console">Back</a></p></section>'
    return layout(str(status), body, session)
