"""Console route handlers. Pages need an operator session (401, or 303 to sign-in for a
browser); actions need the session and its CSRF token (403 otherwise, nothing changed)."""

from __future__ import annotations

from urllib.parse import quote
from uuid import UUID

from aiohttp import web

from orchestrator.adapters.postgres import console_store as store
from orchestrator.console import auth, callpage, pages, static
from orchestrator.console.timeline import build
from orchestrator.console.worker_view import worker_view
from orchestrator.domain.model import Status
from orchestrator.domain.transitions import operator_reasons
from orchestrator.tokenserver import problems as p
from orchestrator.tokenserver.state import SERVER

DONE = {"end": "The call was ended.", "redrive": "Failed deliveries were queued again."}


def _headers(request: web.Request) -> dict[str, str]:
    settings = request.app[SERVER].settings
    auth_origin = settings.supabase_url or ""
    return {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
            f" connect-src 'self' {auth_origin}; form-action 'self'; frame-ancestors 'none';"
            " base-uri 'none'"
        ).replace("  ", " "),
        "Referrer-Policy": "same-origin",  # "no-referrer" makes Chromium send Origin: null
        "X-Frame-Options": "DENY",
    }


def html(request: web.Request, body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers=_headers(request),
    )


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


async def require_session(request: web.Request) -> auth.Session | web.Response:
    session = await auth.current_session(request)
    if session is not None:
        return session
    if auth.wants_html(request):
        return see_other("/console/signin?next=" + quote(request.path, safe="/"))
    raise p.Problem(p.UNAUTHORIZED, "An operator session is required.", reason="no_console_session")


def parse_uuid(raw: str) -> UUID | None:
    try:
        return UUID(raw)
    except ValueError:
        return None


async def signin(request: web.Request) -> web.Response:
    if await auth.current_session(request) is not None:
        return see_other("/console")
    settings = request.app[SERVER].settings
    return html(request, pages.signin(settings.supabase_url or "", settings.supabase_anon_key))


async def _snapshot_html(request: web.Request) -> str:
    server = request.app[SERVER]
    snap = await store.now_snapshot(server.pool)
    settings = server.settings
    worker = worker_view(server.metrics)  # set only under `worker --serve`
    return pages.now_fragment(snap, settings.prune_brake_min, settings.prune_brake_ratio, worker)


async def now(request: web.Request) -> web.Response:
    session = await require_session(request)
    if isinstance(session, web.Response):
        return session
    return html(request, pages.now_page(await _snapshot_html(request), session))


async def now_fragment(request: web.Request) -> web.Response:
    session = await require_session(request)
    if isinstance(session, web.Response):
        return session
    return html(request, await _snapshot_html(request))


async def call_view(
    request: web.Request,
    session: auth.Session,
    call_id: UUID | None,
    message: str = "",
    ok: bool = True,
) -> web.Response:
    record = await store.load_call(request.app[SERVER].pool, call_id) if call_id else None
    if record is None:
        return html(request, pages.error(404, "No such call.", session), 404)
    c = record.call
    passed = c["ring_deadline"] <= c["db_now"]
    reasons = (
        operator_reasons(Status(c["status"]), deadline_passed=passed)
        if c["status"] != "ended"
        else []
    )
    timeline = build(c, record.audit, record.deliveries)
    body = callpage.call_page(record, timeline, reasons, session, message, ok)
    return html(request, body, 200 if ok else 409)


async def call(request: web.Request) -> web.Response:
    session = await require_session(request)
    if isinstance(session, web.Response):
        return session
    message = DONE.get(request.query.get("done", ""), "")
    return await call_view(request, session, parse_uuid(request.match_info["call_id"]), message)


async def user(request: web.Request) -> web.Response:
    session = await require_session(request)
    if isinstance(session, web.Response):
        return session
    user_id = parse_uuid(request.match_info["user_id"])
    if user_id is None:
        return html(request, pages.error(404, "No such user.", session), 404)
    found = await store.user_calls(request.app[SERVER].pool, user_id)
    if found is None:
        return html(request, pages.error(404, "No such user.", session), 404)
    return html(request, callpage.user_page(*found, session))


async def find(request: web.Request) -> web.Response:
    """A call id opens the call, a user id or an email that user's recent calls."""
    session = await require_session(request)
    if isinstance(session, web.Response):
        return session
    pool, q = request.app[SERVER].pool, request.query.get("q", "").strip()
    as_uuid = parse_uuid(q)
    if as_uuid is not None:
        if await store.load_call(pool, as_uuid) is not None:
            return see_other(f"/console/calls/{as_uuid}")
        return see_other(f"/console/users/{as_uuid}")
    found = await store.find_user(pool, q) if "@" in q else None
    if found is None:
        return html(
            request,
            pages.error(404, "Nothing matches that call id, user id or email.", session),
            404,
        )
    return see_other(f"/console/users/{found}")


def _asset(text: str, content_type: str) -> web.Response:
    return web.Response(
        text=text,
        content_type=content_type,
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=300"},
    )


async def script(_: web.Request) -> web.Response:
    return _asset(static.SCRIPT, "text/javascript")


async def style(_: web.Request) -> web.Response:
    return _asset(static.STYLE, "text/css")
