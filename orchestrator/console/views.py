"""Console route handlers. Pages need an operator session (401, or 303 to sign-in for a
browser); actions need the session and its CSRF token (403 otherwise, nothing changed)."""

from __future__ import annotations

from urllib.parse import quote
from uuid import UUID

from aiohttp import hdrs, web

from orchestrator.adapters.jwt_verifier import AuthError, AuthUnavailable, bearer_token
from orchestrator.adapters.postgres import console_store as store
from orchestrator.adapters.rate_limit import RateLimited, RateLimitUnavailable
from orchestrator.console import auth, callpage, pages, static
from orchestrator.console.timeline import build
from orchestrator.domain.model import Status
from orchestrator.operator import operator_reasons
from orchestrator.tokenserver import problems as p
from orchestrator.tokenserver.state import CURRENT, SERVER

NOT_OPERATOR = p.ProblemType("not-an-operator", 403, "Not an operator", "forbidden")
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
        "Referrer-Policy": "no-referrer",
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


async def _session(request: web.Request) -> auth.Session | web.Response:
    session = await auth.current_session(request)
    if session is not None:
        return session
    if auth.wants_html(request):
        return see_other("/console/signin?next=" + quote(request.path, safe="/"))
    raise p.Problem(p.UNAUTHORIZED, "An operator session is required.", reason="no_console_session")


async def _action(request: web.Request) -> auth.Session | web.Response:
    """Session cookie + CSRF token + (when sent) our own Origin, or a 403 that changes nothing."""
    form = await request.post()
    session = await auth.current_session(request) if auth.same_origin(request) else None
    given = form.get("csrf_token")
    if session is None or not auth.csrf_ok(
        session.cookie_value, given if isinstance(given, str) else None
    ):
        CURRENT.get().reason = "csrf"
        return html(
            request, pages.error(403, "Refused: no valid session or CSRF token.", None), 403
        )
    return session


def _uuid(raw: str) -> UUID | None:
    try:
        return UUID(raw)
    except ValueError:
        return None


async def signin(request: web.Request) -> web.Response:
    if await auth.current_session(request) is not None:
        return see_other("/console")
    settings = request.app[SERVER].settings
    return html(request, pages.signin(settings.supabase_url or "", settings.supabase_anon_key))


async def start_session(request: web.Request) -> web.Response:
    server, ctx = request.app[SERVER], CURRENT.get()
    try:
        await server.limiter.hit_ip(ctx.client_ip)
    except RateLimited as exc:
        headers = {"Retry-After": str(exc.retry_after)}
        raise p.Problem(p.RATE_LIMITED, reason="ip_limit", headers=headers) from None
    except RateLimitUnavailable:
        raise p.Problem(p.UNAVAILABLE, reason="rate_limit_storage") from None
    await request.read()
    try:
        identity = await server.verifier.verify(
            bearer_token(request.headers.getall(hdrs.AUTHORIZATION, []))
        )
    except AuthError as exc:
        raise p.Problem(p.UNAUTHORIZED, "The access token is invalid.", reason=exc.reason) from None
    except AuthUnavailable:
        raise p.Problem(p.UNAVAILABLE, reason="auth_unavailable") from None
    ctx.user_id = identity.user_id
    if not auth.is_operator(identity.claims):
        raise p.Problem(
            NOT_OPERATOR, "This account is not a console operator.", reason="not_operator"
        )
    value = auth.new_cookie_value()
    lifetime = await store.create_session(
        server.pool,
        auth.token_hash(value),
        check_session=server.settings.auth_check_session,
        user_id=identity.user_id,
        auth_session_id=identity.session_id,
        expires_at=float(identity.claims["exp"]),
    )
    if lifetime is None:
        raise p.Problem(
            p.UNAUTHORIZED, "The session has ended; sign in again.", reason="session_ended"
        )
    response = web.Response(status=204)
    auth.set_cookie(response, request, value, max(int(lifetime), 1))
    ctx.outcome = "console_session"
    return response


async def logout(request: web.Request) -> web.Response:
    session = await _action(request)
    if isinstance(session, web.Response):
        return session
    await store.delete_session(request.app[SERVER].pool, auth.token_hash(session.cookie_value))
    response = see_other("/console/signin")
    auth.clear_cookie(response, request)
    return response


async def _snapshot_html(request: web.Request) -> str:
    server = request.app[SERVER]
    snap = await store.now_snapshot(server.pool)
    return pages.now_fragment(
        snap, server.settings.prune_brake_min, server.settings.prune_brake_ratio
    )


async def now(request: web.Request) -> web.Response:
    session = await _session(request)
    if isinstance(session, web.Response):
        return session
    return html(request, pages.now_page(await _snapshot_html(request), session))


async def now_fragment(request: web.Request) -> web.Response:
    session = await _session(request)
    if isinstance(session, web.Response):
        return session
    return html(request, await _snapshot_html(request))


async def _call_view(
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
    session = await _session(request)
    if isinstance(session, web.Response):
        return session
    message = DONE.get(request.query.get("done", ""), "")
    return await _call_view(request, session, _uuid(request.match_info["call_id"]), message)


async def end_call(request: web.Request) -> web.Response:
    session = await _action(request)
    if isinstance(session, web.Response):
        return session
    call_id, reason = _uuid(request.match_info["call_id"]), (await request.post()).get("reason")
    if call_id is None or not isinstance(reason, str):
        return await _call_view(request, session, call_id, "A reason is required.", ok=False)
    result = await store.end_call(
        request.app[SERVER].pool, call_id, reason, session.operator.user_id
    )
    if not result.ok:
        return await _call_view(request, session, call_id, result.message, ok=False)
    return see_other(f"/console/calls/{call_id}?done=end")


async def redrive(request: web.Request) -> web.Response:
    session = await _action(request)
    if isinstance(session, web.Response):
        return session
    call_id = _uuid(request.match_info["call_id"])
    if call_id is None:
        return html(request, pages.error(404, "No such call.", session), 404)
    result = await store.redrive_call(request.app[SERVER].pool, call_id, session.operator.user_id)
    if not result.ok:
        return await _call_view(request, session, call_id, result.message, ok=False)
    return see_other(f"/console/calls/{call_id}?done=redrive")


async def user(request: web.Request) -> web.Response:
    session = await _session(request)
    if isinstance(session, web.Response):
        return session
    user_id = _uuid(request.match_info["user_id"])
    if user_id is None:
        return html(request, pages.error(404, "No such user.", session), 404)
    found, calls = await store.user_calls(request.app[SERVER].pool, user_id)
    return html(request, callpage.user_page(found, calls, session))


async def find(request: web.Request) -> web.Response:
    """A call id opens the call, a user id or an email that user's recent calls."""
    session = await _session(request)
    if isinstance(session, web.Response):
        return session
    pool, q = request.app[SERVER].pool, request.query.get("q", "").strip()
    as_uuid = _uuid(q)
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
