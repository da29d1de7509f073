"""The console's routes in the token server's OpenAPI document (pages are HTML for browsers;
see docs/console.md). Kept here so the console's routes and their description change together."""

from __future__ import annotations

from typing import Any

HTML = {"text/html": {"schema": {"type": "string"}}}
PROBLEM = {"application/problem+json": {"schema": {"type": "object"}}}
SESSION: list[dict[str, list[str]]] = [{"consoleSession": []}]


def _page(op: str, summary: str, *params: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "get": {
            "operationId": op,
            "summary": summary,
            "security": SESSION,
            "responses": {
                "200": {"description": "The page.", "content": HTML},
                "303": {"description": "No operator session: to /console/signin (HTML)."},
                "401": {"description": "No operator session.", "content": PROBLEM},
            },
        }
    }
    if params:
        item["parameters"] = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in params
        ]
    return item


def _action(op: str, summary: str, fields: dict[str, Any]) -> dict[str, Any]:
    form = {"type": "object", "required": list(fields), "properties": fields}
    return {
        "parameters": [
            {"name": "call_id", "in": "path", "required": True,
             "schema": {"type": "string", "format": "uuid"}}
        ],
        "post": {
            "operationId": op,
            "summary": summary,
            "security": SESSION,
            "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": form}}},
            "responses": {
                "303": {"description": "Done: back to the call's page."},
                "403": {"description": "No session, or a missing or wrong CSRF token."},
                "409": {"description": "Refused by the operator rules.", "content": HTML},
            },
        },
    }  # fmt: skip


CSRF = {"csrf_token": {"type": "string"}}
CONSOLE_PATHS: dict[str, Any] = {
    "/console": _page("consoleNow", "Now: live calls, pushes, brake, queue"),
    "/console/now/fragment": _page("consoleNowFragment", "The 'now' figures as an HTML fragment"),
    "/console/find": _page("consoleFind", "Find a call (id) or a user (id or email): 303"),
    "/console/calls/{call_id}": _page("consoleCall", "A call's timeline", "call_id"),
    "/console/users/{user_id}": _page("consoleUser", "A user's recent calls", "user_id"),
    "/console/signin": {"get": {
        "operationId": "consoleSignin", "summary": "Operator sign-in page", "security": [],
        "responses": {"200": {"description": "The page.", "content": HTML}},
    }},
    "/console/static/console.js": {"get": {
        "operationId": "consoleScript", "summary": "The console's script", "security": [],
        "responses": {"200": {"description": "JavaScript."}},
    }},
    "/console/static/console.css": {"get": {
        "operationId": "consoleStyle", "summary": "The console's stylesheet", "security": [],
        "responses": {"200": {"description": "CSS."}},
    }},
    "/console/session": {"post": {
        "operationId": "consoleSession",
        "summary": "An operator's access token → the orchestrator_console session cookie",
        "security": [{"supabaseAccessToken": []}],
        "responses": {
            "204": {"description": "Signed in: HttpOnly, SameSite=Strict cookie set."},
            "401": {"description": "No or invalid token, or ended session.", "content": PROBLEM},
            "403": {"description": "Not an operator.", "content": PROBLEM},
        },
    }},
    "/console/logout": {"post": {
        "operationId": "consoleLogout", "summary": "End the console session",
        "security": SESSION,
        "responses": {"303": {"description": "Signed out."}, "403": {"description": "No CSRF."}},
    }},
    "/console/calls/{call_id}/end": _action(
        "consoleEndCall", "End a call (operator rules)", CSRF | {"reason": {"type": "string"}}
    ),
    "/console/calls/{call_id}/redrive": _action(
        "consoleRedrive", "Redrive a call's failed deliveries", CSRF
    ),
}  # fmt: skip
SECURITY_SCHEME = {"type": "apiKey", "in": "cookie", "name": "orchestrator_console"}
