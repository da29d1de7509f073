"""OpenAPI 3.1 description of every route (served at /openapi.json; a test keeps it accurate)."""

from __future__ import annotations

from typing import Any

from orchestrator import __version__
from orchestrator.console.openapi import CONSOLE_PATHS, SECURITY_SCHEME
from orchestrator.tokenserver import problems as p
from orchestrator.tokenserver.ncs import NCS_PATH

TOKEN_PATH = "/v1/calls/{call_id}/agora-token"
JSON = "application/json"


def _problem(description: str, *kinds: p.ProblemType, headers: dict[str, Any] | None = None) -> Any:
    answer: dict[str, Any] = {
        "description": description + " Problem types: " + ", ".join(k.uri for k in kinds) + ".",
        "content": {p.PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _ok(description: str, schema: dict[str, Any], media: str = JSON) -> Any:
    return {"description": description, "content": {media: {"schema": schema}}}


REQUEST_ID = {"$ref": "#/components/parameters/RequestId"}
UNAVAILABLE = _problem("A dependency (database, auth, rate-limit storage) is down.", p.UNAVAILABLE)
TOKEN_RESPONSES = {
    "200": _ok("A publisher token for the call's channel.", {"$ref": "#/components/schemas/Token"}),
    "401": _problem(
        "Missing, malformed, expired or otherwise invalid access token, or ended session.",
        p.UNAUTHORIZED,
        headers={"WWW-Authenticate": {"schema": {"type": "string"}}},
    ),
    "404": _problem("Unknown call, or the user is not a participant.", p.NOT_FOUND),
    "400": _problem("Malformed request (for example a broken body).", p.BAD_REQUEST),
    "408": _problem("The client did not send its request in time.", p.REQUEST_TIMEOUT),
    "409": _problem(
        "The call has ended (or reached its maximum duration); or the callee asked while the"
        " call still rings (tokens come once it is accepted unless CALLEE_TOKEN_WHILE_RINGING=1).",
        p.CALL_ENDED,
        p.CALL_NOT_ACCEPTED,
    ),
    "413": _problem("Request body too large.", p.PAYLOAD_TOO_LARGE),
    "429": _problem(
        "Per-user or per-IP rate limit reached.",
        p.RATE_LIMITED,
        headers={"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
    ),
    "503": UNAVAILABLE,
}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "call-orchestrator token server",
        "version": __version__,
        "description": "Agora RTC tokens for the participants of a 1:1 call (Supabase auth).",
    },
    "paths": {
        TOKEN_PATH: {
            "parameters": [
                {"name": "call_id", "in": "path", "required": True,
                 "schema": {"type": "string", "format": "uuid"}},
                REQUEST_ID,
            ],
            "post": {
                "operationId": "issueAgoraToken",
                "summary": "Issue (or renew) an Agora token for the caller or callee",
                "security": [{"supabaseAccessToken": []}],
                "responses": TOKEN_RESPONSES,
            },
            "options": {
                "operationId": "corsPreflight",
                "summary": "CORS preflight for origins in CORS_ALLOW_ORIGINS",
                "security": [],
                "responses": {
                    "204": {"description": "Origin allowed."},
                    "403": _problem("Origin not allowed.", p.FORBIDDEN_ORIGIN),
                },
            },
        },
        "/healthz": {"get": {
            "operationId": "healthz", "summary": "Liveness", "security": [],
            "responses": {"200": _ok("Alive.", {"$ref": "#/components/schemas/Health"})},
        }},
        "/readyz": {"get": {
            "operationId": "readyz", "summary": "Readiness (database reachable)", "security": [],
            "responses": {
                "200": _ok("Ready.", {"$ref": "#/components/schemas/Readiness"}),
                "503": UNAVAILABLE,
            },
        }},
        "/metrics": {"get": {
            "operationId": "metrics", "summary": "Prometheus metrics", "security": [],
            "responses": {"200": _ok("Text exposition format.", {"type": "string"}, "text/plain")},
        }},
        "/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document", "security": [],
            "responses": {"200": _ok("OpenAPI 3.1 document.", {"type": "object"})},
        }},
        **CONSOLE_PATHS,
    },
    "components": {
        "securitySchemes": {
            "supabaseAccessToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "consoleSession": SECURITY_SCHEME,
        },
        "parameters": {
            "RequestId": {"name": "X-Request-Id", "in": "header", "required": False,
                          "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}},
        },
        "schemas": {
            "Token": {
                "type": "object",
                "additionalProperties": False,
                "required": ["app_id", "channel", "uid", "token", "token_version", "expires_at"],
                "properties": {
                    "app_id": {"type": "string", "pattern": "^[0-9a-fA-F]{32}$"},
                    "channel": {"type": "string", "format": "uuid",
                                "description": "The call id."},
                    "uid": {"type": "integer", "enum": [1, 2],
                            "description": "1 = caller, 2 = callee."},
                    "token": {"type": "string"},
                    "token_version": {"type": "string", "enum": ["006", "007"]},
                    "expires_at": {"type": "string", "format": "date-time",
                                   "description": "Token and privilege expiry (RFC 3339 UTC)."},
                },
            },
            "Problem": {
                "type": "object",
                "required": ["type", "title", "status"],
                "properties": {
                    "type": {"type": "string", "format": "uri",
                             "enum": [kind.uri for kind in p.ALL]},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "instance": {"type": "string"},
                    "request_id": {"type": "string"},
                    "ready": {"type": "boolean"},
                    "checks": {"type": "object", "additionalProperties": {"enum": ["ok", "down"]}},
                },
            },
            "Health": {"type": "object", "required": ["status"],
                       "properties": {"status": {"const": "ok"}}},
            "Readiness": {
                "type": "object",
                "required": ["status", "ready", "checks"],
                "properties": {
                    "status": {"const": "ready"},
                    "ready": {"const": True},
                    "checks": {"type": "object", "additionalProperties": {"enum": ["ok", "down"]}},
                },
            },
        },
    },
    "security": [{"supabaseAccessToken": []}],
}  # fmt: skip

# Agora Notifications (presence, docs/presence.md): signed by NCS, no bearer token.
SPEC["paths"][NCS_PATH] = {"post": {
    "operationId": "agoraNotifications",
    "summary": "Agora NCS channel events (join/leave/destroy) for presence",
    "security": [],
    "parameters": [{"name": "Agora-Signature-V2", "in": "header", "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    "description": "Hex HMAC-SHA256 of the raw body (AGORA_NCS_SECRET)."}],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["noticeId", "productId", "eventType", "payload"]}}}},
    "responses": {
        "200": _ok("Recorded, already recorded, or ignored (logged).",
                   {"type": "object", "properties": {"ok": {"const": True}}}),
        "401": _problem("Missing or wrong signature; nothing recorded.", p.UNAUTHORIZED),
        "413": _problem("Body larger than the notice limit.", p.PAYLOAD_TOO_LARGE),
        "503": UNAVAILABLE,
    },
}}  # fmt: skip
