"""RFC 9457 problem documents with stable `type` URIs (listed in the README, Token server)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from aiohttp import web

PROBLEM_BASE = "https://call-orchestrator.dev/problems/"
PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True, slots=True)
class ProblemType:
    slug: str
    status: int
    title: str
    outcome: str  # the `outcome` label of logs and metrics

    @property
    def uri(self) -> str:
        return PROBLEM_BASE + self.slug


BAD_REQUEST = ProblemType("bad-request", 400, "Bad request", "bad_request")
UNAUTHORIZED = ProblemType("unauthorized", 401, "Missing or invalid access token", "unauthorized")
FORBIDDEN_ORIGIN = ProblemType("origin-not-allowed", 403, "Origin not allowed", "forbidden")
NOT_FOUND = ProblemType("not-found", 404, "Not found", "not_found")
METHOD_NOT_ALLOWED = ProblemType("method-not-allowed", 405, "Method not allowed", "bad_request")
REQUEST_TIMEOUT = ProblemType("request-timeout", 408, "Request timeout", "bad_request")
CALL_ENDED = ProblemType("call-ended", 409, "Call has ended", "ended")
# The callee gets a token only once the call is accepted (CALLEE_TOKEN_WHILE_RINGING=1: earlier).
CALL_NOT_ACCEPTED = ProblemType("call-not-accepted", 409, "Call not accepted yet", "not_accepted")
PAYLOAD_TOO_LARGE = ProblemType("payload-too-large", 413, "Payload too large", "bad_request")
RATE_LIMITED = ProblemType("rate-limited", 429, "Too many requests", "rate_limited")
INTERNAL = ProblemType("internal", 500, "Internal server error", "error")
UNAVAILABLE = ProblemType("dependency-unavailable", 503, "Dependency unavailable", "unavailable")

ALL = (
    BAD_REQUEST, UNAUTHORIZED, FORBIDDEN_ORIGIN, NOT_FOUND, METHOD_NOT_ALLOWED, REQUEST_TIMEOUT,
    CALL_ENDED, CALL_NOT_ACCEPTED, PAYLOAD_TOO_LARGE, RATE_LIMITED, INTERNAL, UNAVAILABLE,
)  # fmt: skip
# aiohttp's own errors by status; a 409 from aiohttp itself would be a plain conflict.
BY_STATUS = {kind.status: kind for kind in ALL if kind is not CALL_NOT_ACCEPTED}


class Problem(Exception):
    """Raised by handlers; the middleware renders it. `reason` goes to the log line only."""

    def __init__(
        self,
        kind: ProblemType,
        detail: str | None = None,
        *,
        reason: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(kind.slug)
        self.kind = kind
        self.detail = detail
        self.reason = reason
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def response(self, instance: str, request_id: str) -> web.Response:
        body: dict[str, object] = {
            "type": self.kind.uri,
            "title": self.kind.title,
            "status": self.kind.status,
        }
        if self.detail:
            body["detail"] = self.detail
        body["instance"] = instance
        body["request_id"] = request_id
        body.update(self.extra)
        return web.Response(
            status=self.kind.status,
            body=orjson.dumps(body),
            content_type=PROBLEM_JSON,
            headers=self.headers,
        )


def from_http_exception(exc: web.HTTPException) -> Problem:
    """aiohttp's own errors (unknown route, wrong method, body too large) as problems."""
    kind = BY_STATUS.get(exc.status, INTERNAL if exc.status >= 500 else BAD_REQUEST)
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return Problem(kind, reason=f"http_{exc.status}", headers=headers)
