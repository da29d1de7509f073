"""Route handlers: the token endpoint, CORS preflight, health, readiness, metrics, OpenAPI."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime
from uuid import UUID

from aiohttp import hdrs, web
from prometheus_client import CONTENT_TYPE_LATEST

from orchestrator.adapters.agora.token_builder import build_publisher_token
from orchestrator.adapters.auth.jwt_verifier import (
    AuthError,
    AuthUnavailable,
    Identity,
    bearer_token,
)
from orchestrator.adapters.postgres import token_store as store
from orchestrator.adapters.ratelimit.limiter import RateLimited, RateLimitUnavailable
from orchestrator.domain.push import rfc3339
from orchestrator.tokenserver import problems as p
from orchestrator.tokenserver.openapi import SPEC
from orchestrator.tokenserver.state import CURRENT, SERVER, TokenServer

REALM = 'Bearer realm="call-orchestrator"'
AUTH_DETAILS = {
    "missing": "An 'Authorization: Bearer <access token>' header is required.",
    "expired": "The access token has expired.",
    "session_ended": "The session has ended; sign in again.",
}


def _unauthorized(reason: str) -> p.Problem:
    challenge = REALM if reason == "missing" else f'{REALM}, error="invalid_token"'
    detail = AUTH_DETAILS.get(reason, "The access token is invalid.")
    return p.Problem(p.UNAUTHORIZED, detail, reason=reason, headers={"WWW-Authenticate": challenge})


async def _limit(hit: Awaitable[None]) -> None:
    try:
        await hit
    except RateLimited as exc:
        raise p.Problem(
            p.RATE_LIMITED,
            "Too many token requests; retry later.",
            reason=f"{exc.scope}_limit",
            headers={"Retry-After": str(exc.retry_after)},
        ) from None
    except RateLimitUnavailable:
        raise p.Problem(
            p.UNAVAILABLE, "The rate-limit storage is unavailable.", reason="rate_limit_storage"
        ) from None


async def _authenticate(server: TokenServer, request: web.Request) -> Identity:
    try:
        token = bearer_token(request.headers.getall(hdrs.AUTHORIZATION, []))
        return await server.verifier.verify(token)
    except AuthError as exc:
        raise _unauthorized(exc.reason) from None
    except AuthUnavailable:
        raise p.Problem(
            p.UNAVAILABLE, "The authentication service is unavailable.", reason="auth_unavailable"
        ) from None


async def _read_body(server: TokenServer, request: web.Request) -> None:
    """Read (and ignore) the body: enforces client_max_size (413). A client that is slow or
    sends a malformed body is the client's problem (408/400), never a 503: 503 means a
    dependency is down, and only that moves tokens_total{outcome="unavailable"}."""
    try:
        async with asyncio.timeout(server.limits.body_timeout):
            await request.read()
    except web.HTTPException:
        raise
    except TimeoutError:
        raise p.Problem(
            p.REQUEST_TIMEOUT, "The request body did not arrive in time.", reason="body_timeout"
        ) from None
    except Exception as exc:  # a broken chunked encoding, a short body, a reset
        raise p.Problem(
            p.BAD_REQUEST, "The request body is malformed.", reason=type(exc).__name__
        ) from None


async def agora_token(request: web.Request) -> web.Response:
    server, ctx = request.app[SERVER], CURRENT.get()
    ctx.call_id = request.match_info["call_id"]
    await _limit(server.limiter.hit_ip(ctx.client_ip))
    await _read_body(server, request)
    identity = await _authenticate(server, request)
    ctx.user_id = identity.user_id
    await _limit(server.limiter.hit_user(str(identity.user_id)))
    try:
        call_id = UUID(ctx.call_id)
    except ValueError:
        raise p.Problem(p.NOT_FOUND, "No such call.", reason="bad_call_id") from None
    settings = server.settings
    try:
        grant = await store.issue(
            server.pool,
            call_id=call_id,
            user_id=identity.user_id,
            session_id=identity.session_id,
            check_session=settings.auth_check_session,
            ttl=settings.token_ttl_seconds,
            max_call_seconds=settings.max_call_seconds,
            token_version=settings.agora_token_version,
            time_limit=server.limits.db_timeout,
            callee_while_ringing=settings.callee_token_while_ringing,
        )
    except store.StoreUnavailable:
        raise p.Problem(p.UNAVAILABLE, "The database is unavailable.", reason="database") from None
    match grant.outcome:
        case store.Outcome.NO_SESSION:
            raise _unauthorized("session_ended")
        case store.Outcome.NOT_FOUND:
            raise p.Problem(p.NOT_FOUND, "No such call.", reason="not_found")
        case store.Outcome.ENDED:
            raise p.Problem(p.CALL_ENDED, "The call has ended.", reason="ended")
        case store.Outcome.NOT_ACCEPTED:
            # A callee with a publisher token could join and watch the caller before answering.
            detail = "The callee gets a token once the call is accepted."
            raise p.Problem(p.CALL_NOT_ACCEPTED, detail, reason="not_accepted")
        case store.Outcome.MAX_DURATION:
            detail = "The call has reached its maximum duration."
            raise p.Problem(p.CALL_ENDED, detail, reason="max_duration")
    token = build_publisher_token(
        settings.agora_token_version,
        server.app_id,
        server.app_cert,
        channel=str(call_id),
        uid=grant.uid,
        issue_ts=grant.issue_ts,
        expire_ts=grant.expire_ts,
    )
    ctx.outcome = "issued"
    return web.json_response(
        {
            "app_id": server.app_id,
            "channel": str(call_id),
            "uid": grant.uid,
            "token": token,
            "token_version": settings.agora_token_version,
            "expires_at": rfc3339(datetime.fromtimestamp(grant.expire_ts, UTC)),
        }
    )


async def preflight(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    origin = request.headers.get("Origin")
    method = request.headers.get("Access-Control-Request-Method", "").upper()
    if origin not in server.settings.cors_allow_origins or method != "POST":
        raise p.Problem(p.FORBIDDEN_ORIGIN, "Cross-origin request not allowed.", reason="cors")
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Request-Id",
            "Access-Control-Max-Age": "600",
        },
    )


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    checks = {"database": await store.ping(server.pool, server.limits.readiness_timeout)}
    if server.limiter.shared:
        checks["rate_limit_storage"] = await server.limiter.healthy()
    report = {name: "ok" if ok else "down" for name, ok in checks.items()}
    if all(checks.values()):
        return web.json_response({"status": "ready", "ready": True, "checks": report})
    down = ", ".join(name for name, ok in checks.items() if not ok)
    raise p.Problem(
        p.UNAVAILABLE,
        f"Not ready: {down}.",
        reason="not_ready",
        extra={"ready": False, "checks": report},
    )


async def metrics(request: web.Request) -> web.Response:
    body = request.app[SERVER].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(_: web.Request) -> web.Response:
    return web.json_response(SPEC, headers={"Cache-Control": "public, max-age=300"})
