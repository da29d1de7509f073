"""What the token server's handlers share: the app-wide state and the per-request context."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg
from aiohttp import web

from orchestrator.adapters.auth.jwt_verifier import Verifier
from orchestrator.adapters.ratelimit.limiter import RateLimiter
from orchestrator.config import Settings
from orchestrator.metrics import Metrics


@dataclass(frozen=True, slots=True)
class Limits:
    """Timeouts and sizes (not environment variables; tests may shrink them)."""

    db_timeout: float = 3.0
    readiness_timeout: float = 2.0
    request_timeout: float = 10.0
    body_timeout: float = 5.0  # a client that stalls its body gets 408, not 503
    max_body_bytes: int = 1024  # the token endpoint takes no body
    keepalive_timeout: float = 15.0
    shutdown_timeout: float = 10.0
    max_line_size: int = 4096
    max_field_size: int = 8190
    max_headers: int = 64


@dataclass(slots=True)
class TokenServer:
    settings: Settings
    pool: asyncpg.Pool
    metrics: Metrics
    verifier: Verifier
    limiter: RateLimiter
    limits: Limits
    app_id: str
    app_cert: str = field(repr=False)
    owns_verifier: bool = False

    @property
    def tls(self) -> bool:
        return bool(self.settings.tls_cert_file)


SERVER = web.AppKey("token_server", TokenServer)


@dataclass(slots=True)
class RequestContext:
    request_id: str
    started: float
    client_ip: str = "unknown"
    user_id: UUID | None = None
    call_id: str | None = None
    outcome: str | None = None
    reason: str | None = None


CURRENT: ContextVar[RequestContext] = ContextVar("token_server_request")
