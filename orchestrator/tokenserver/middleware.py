"""One middleware: request id, time limit, problems, security and CORS headers, one log line."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from orchestrator.adapters.ratelimit.limiter import client_ip
from orchestrator.logs import get_logger
from orchestrator.tokenserver.problems import INTERNAL, UNAVAILABLE, Problem, from_http_exception
from orchestrator.tokenserver.state import CURRENT, SERVER, RequestContext, TokenServer

log = get_logger("orchestrator.tokenserver")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
TOKEN_ROUTE = "agora-token"
HSTS = "max-age=63072000; includeSubDomains"


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-Id", "")
    return given if REQUEST_ID.match(given) else uuid.uuid4().hex


async def _run(request: web.Request, handler: Handler, server: TokenServer) -> web.StreamResponse:
    ctx = CURRENT.get()
    try:
        async with asyncio.timeout(server.limits.request_timeout):
            response = await handler(request)
    except Problem as exc:
        problem = exc
    except web.HTTPException as exc:
        problem = from_http_exception(exc)
    except TimeoutError:
        problem = Problem(UNAVAILABLE, "The request took too long.", reason="request_timeout")
    except Exception as exc:
        log.exception("unhandled_error", request_id=ctx.request_id, error=type(exc).__name__)
        problem = Problem(INTERNAL, reason=type(exc).__name__)
    else:
        ctx.outcome = ctx.outcome or "ok"
        return response
    ctx.outcome, ctx.reason = problem.kind.outcome, problem.reason
    return problem.response(request.path, ctx.request_id)


def _decorate(request: web.Request, response: web.StreamResponse, server: TokenServer) -> None:
    headers = response.headers
    headers["X-Request-Id"] = CURRENT.get().request_id
    headers["X-Content-Type-Options"] = "nosniff"
    headers.setdefault("Cache-Control", "no-store")
    if server.tls:
        headers["Strict-Transport-Security"] = HSTS
    origin = request.headers.get("Origin")
    if origin is not None and origin in server.settings.cors_allow_origins:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = "Retry-After, X-Request-Id"
        headers["Vary"] = "Origin"


@web.middleware
async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    server = request.app[SERVER]
    ctx = RequestContext(request_id=_request_id(request), started=time.perf_counter())
    ctx.client_ip = client_ip(
        request.remote,
        request.headers.getall("X-Forwarded-For", []),
        server.settings.trusted_proxy_hops,
    )
    reset = CURRENT.set(ctx)
    try:
        response = await _run(request, handler, server)
        _decorate(request, response, server)
    finally:
        CURRENT.reset(reset)
    elapsed = time.perf_counter() - ctx.started
    route = request.match_info.route.name
    if route == TOKEN_ROUTE and request.method == "POST":
        server.metrics.tokens.labels(ctx.outcome or "error").inc()
        server.metrics.token_latency.observe(elapsed)
    (log.warning if response.status >= 500 else log.info)(
        "request",
        request_id=ctx.request_id,
        method=request.method,
        path=request.path,
        status=response.status,
        outcome=ctx.outcome,
        reason=ctx.reason,
        user_id=str(ctx.user_id) if ctx.user_id else None,
        call_id=ctx.call_id,
        client_ip=ctx.client_ip,
        latency_ms=round(elapsed * 1000, 2),
    )
    return response
