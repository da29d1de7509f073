"""Console actions: sign-in (a Supabase access token of an operator → the session cookie),
sign-out, and ending or redriving a call. Every form action needs the session and its CSRF
token (and our own Origin when the browser sends one): otherwise 403 and nothing changes."""

from __future__ import annotations

from aiohttp import hdrs, web

from orchestrator.adapters.auth.jwt_verifier import AuthError, AuthUnavailable, bearer_token
from orchestrator.adapters.postgres import console_store as store
from orchestrator.adapters.ratelimit.limiter import RateLimited, RateLimitUnavailable
from orchestrator.console import auth, pages, views
from orchestrator.tokenserver import problems as p
from orchestrator.tokenserver.state import CURRENT, SERVER

NOT_OPERATOR = p.ProblemType("not-an-operator", 403, "Not an operator", "forbidden")


async def _action(request: web.Request) -> auth.Session | web.Response:
    """Session cookie + CSRF token + (when sent) our own Origin, or a 403 that changes nothing."""
    form = await request.post()
    session = await auth.current_session(request) if auth.same_origin(request) else None
    given = form.get("csrf_token")
    if session is None or not auth.csrf_ok(
        session.cookie_value, given if isinstance(given, str) else None
    ):
        CURRENT.get().reason = "csrf"
        return views.html(
            request, pages.error(403, "Refused: no valid session or CSRF token.", None), 403
        )
    return session


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
    response = views.see_other("/console/signin")
    auth.clear_cookie(response, request)
    return response


async def end_call(request: web.Request) -> web.Response:
    session = await _action(request)
    if isinstance(session, web.Response):
        return session
    call_id, reason = (
        views.parse_uuid(request.match_info["call_id"]),
        (await request.post()).get("reason"),
    )
    if call_id is None or not isinstance(reason, str):
        return await views.call_view(request, session, call_id, "A reason is required.", ok=False)
    result = await store.end_call(
        request.app[SERVER].pool, call_id, reason, session.operator.user_id
    )
    if not result.ok:
        return await views.call_view(request, session, call_id, result.message, ok=False)
    return views.see_other(f"/console/calls/{call_id}?done=end")


async def redrive(request: web.Request) -> web.Response:
    session = await _action(request)
    if isinstance(session, web.Response):
        return session
    call_id = views.parse_uuid(request.match_info["call_id"])
    if call_id is None:
        return views.html(request, pages.error(404, "No such call.", session), 404)
    result = await store.redrive_call(request.app[SERVER].pool, call_id, session.operator.user_id)
    if not result.ok:
        return await views.call_view(request, session, call_id, result.message, ok=False)
    return views.see_other(f"/console/calls/{call_id}?done=redrive")
