"""Console access: operator check, the session cookie, and the CSRF token bound to it.

The cookie holds 32 random bytes; the database keeps only their SHA-256, so neither the
table nor a log line can be replayed. The CSRF token is an HMAC of the cookie value: a page
of ours can embed it, a cross-site page cannot compute it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from orchestrator.adapters.postgres import console_store as store
from orchestrator.tokenserver.state import CURRENT, SERVER

COOKIE = "orchestrator_console"
ROLE_CLAIM = "orchestrator_role"
OPERATOR_ROLE = "operator"
CSRF_CONTEXT = b"orchestrator-console-csrf"


def is_operator(claims: Mapping[str, Any]) -> bool:
    """Only `app_metadata` counts: users can edit `user_metadata` themselves."""
    meta = claims.get("app_metadata")
    return isinstance(meta, Mapping) and meta.get(ROLE_CLAIM) == OPERATOR_ROLE


def new_cookie_value() -> str:
    return secrets.token_urlsafe(32)


def token_hash(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def csrf_token(cookie_value: str) -> str:
    return hmac.new(cookie_value.encode(), CSRF_CONTEXT, hashlib.sha256).hexdigest()


def csrf_ok(cookie_value: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(csrf_token(cookie_value), given)


def secure_transport(request: web.Request) -> bool:
    """HTTPS here, or at a trusted proxy that terminated TLS (TRUSTED_PROXY_HOPS > 0)."""
    server = request.app[SERVER]
    if request.secure or server.tls:
        return True
    if server.settings.trusted_proxy_hops <= 0:
        return False
    forwarded = ",".join(request.headers.getall("X-Forwarded-Proto", []))
    nearest = forwarded.rsplit(",", 1)[-1].strip().lower()  # set by the closest proxy
    return nearest == "https"


def set_cookie(
    response: web.StreamResponse, request: web.Request, value: str, max_age: int
) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=max_age,
        path="/console",
        httponly=True,
        samesite="Strict",
        secure=secure_transport(request),
    )


def clear_cookie(response: web.StreamResponse, request: web.Request) -> None:
    response.del_cookie(
        COOKIE, path="/console", samesite="Strict", secure=secure_transport(request)
    )


class Session:
    """A signed-in operator for this request."""

    __slots__ = ("cookie_value", "operator")

    def __init__(self, operator: store.Operator, cookie_value: str) -> None:
        self.operator = operator
        self.cookie_value = cookie_value

    @property
    def csrf(self) -> str:
        return csrf_token(self.cookie_value)


async def current_session(request: web.Request) -> Session | None:
    value = request.cookies.get(COOKIE)
    if not value or len(value) > 128:
        return None
    server = request.app[SERVER]
    operator = await store.lookup_session(
        server.pool, token_hash(value), check_session=server.settings.auth_check_session
    )
    if operator is None:
        return None
    CURRENT.get().user_id = operator.user_id  # the request's log line names the operator
    return Session(operator, value)


def wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def same_origin(request: web.Request) -> bool:
    """Defence in depth beside the CSRF token: a browser's Origin must be ours when sent."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    # The host only: behind a TLS-terminating proxy our own scheme may read as http.
    return urlsplit(origin).netloc == request.host
