"""A fake FCM HTTP v1 plus its OAuth token endpoint (aiohttp, real sockets).

OAuth: POST /token takes the service-account JWT-bearer grant (RS256, checked with the account's
public key) and returns `access_token` + `expires_in`. Send: POST
/v1/projects/{project}/messages:send, behaviour by registration-token prefix: ok,
unregistered (404 UNREGISTERED), invalid (400 INVALID_ARGUMENT, token not valid), mismatch (403
SENDER_ID_MISMATCH), throttle (429, Retry-After: 1), unavailable (503), hang (never answers).
Any other prefix: 400 INVALID_ARGUMENT (not about the token). `fail_every = N`: every Nth 503.

Ambiguous failures (`ambiguous = 0.1`: that share of requests that would be answered 200, in
turn): `late` answers 200 only after `late_seconds` (after the client's timeout), `drop` closes
the connection without an answer. Both count as received and accepted (FCM delivers them).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web

from tests.fakes.keys import ServiceAccount
from tests.fakes.tokens import behaviour

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
TTL = re.compile(r"^\d+(\.\d{1,9})?s$")
ERRORS: dict[str, tuple[int, str, str, str]] = {
    "unregistered": (404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found."),
    "invalid": (
        400,
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "The registration token is not a valid FCM registration token",
    ),
    "mismatch": (403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "SenderId mismatch"),
    "throttle": (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded."),
    "unavailable": (503, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable."),
}


@dataclass
class Sent:
    token: str
    message: dict[str, Any]
    access_token: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeFcm:
    def __init__(self) -> None:
        self.account: ServiceAccount | None = None  # set before the first token request
        self.expires_in = 3600
        self.fail_every: int | None = None
        self.latency = 0.0  # seconds before each answer (a provider's own latency)
        self.ambiguous = 0.0
        self.late_seconds = 1.0
        self.ambiguous_modes = ("late", "drop")
        self.ambiguous_counts: Counter[str] = Counter()
        self._random = random.Random(21)
        self.refuse_grants = False
        self.requests: list[Sent] = []
        self.counts: Counter[tuple[str, str, str]] = Counter()  # (token, call_id, kind)
        self.token_requests = 0
        self.grant_errors: list[str] = []
        self._tokens: set[str] = set()
        self._stop = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> FakeFcm:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    async def close(self) -> None:
        self._stop.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def revoke_tokens(self) -> None:
        """Every access token issued so far is now answered 401 (as after a key rotation)."""
        self._tokens.clear()

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        assert self.account is not None, "set FakeFcm.account first"
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        try:
            claims = jwt.decode(
                str(form.get("assertion", "")),
                self.account.public_key,
                algorithms=["RS256"],
                # google-auth always addresses Google's endpoint, whatever token_uri says
                audience=[self.token_uri, GOOGLE_TOKEN_AUDIENCE],
                issuer=self.account.client_email,
            )
        except jwt.PyJWTError as exc:
            self.grant_errors.append(repr(exc))
            return web.json_response({"error": "invalid_grant"}, status=400)
        if self.refuse_grants or SCOPE not in str(claims.get("scope", "")).split():
            return web.json_response({"error": "invalid_scope"}, status=400)
        token = f"ya29.fake-{self.token_requests}-{time.monotonic_ns()}"
        self._tokens.add(token)
        return web.json_response(
            {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}
        )

    async def _send(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        access = auth.removeprefix("Bearer ")
        body = await request.json()
        message = body.get("message", {}) if isinstance(body, dict) else {}
        token = str(message.get("token", ""))
        sent = Sent(token, message, access)
        self.requests.append(sent)
        data = message.get("data", {})
        self.counts[(token, str(data.get("call_id")), str(data.get("kind")))] += 1
        if access not in self._tokens:
            return self._error(sent, 401, "UNAUTHENTICATED", None, "Invalid credentials")
        if self.account and request.match_info["project"] != self.account.project_id:
            return self._error(sent, 403, "PERMISSION_DENIED", None, "Wrong project")
        if problem := self._invalid(message):
            return self._error(sent, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", problem)
        if self.latency:
            await asyncio.sleep(self.latency)  # the provider's latency, not a synchronisation
        if self.fail_every and len(self.requests) % self.fail_every == 0:
            return self._error(sent, 503, *ERRORS["unavailable"][1:])
        prefix = behaviour(token)
        if prefix == "hang":
            await self._stop.wait()
            return web.Response(status=503)
        if prefix == "ok":
            sent.status = 200
            name = f"projects/{request.match_info['project']}/messages/{len(self.requests)}"
            if self.ambiguous and self._random.random() < self.ambiguous:
                modes = self.ambiguous_modes
                mode = modes[sum(self.ambiguous_counts.values()) % len(modes)]
                self.ambiguous_counts[mode] += 1
                if mode == "drop":
                    assert request.transport is not None
                    request.transport.abort()  # processed, never answered
                    return web.Response(status=200)  # goes nowhere: the socket is gone
                await asyncio.sleep(self.late_seconds)  # the client gave up meanwhile
            return web.json_response({"name": name})
        status, rpc, code, text = ERRORS.get(
            prefix, (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Invalid JSON payload")
        )
        return self._error(sent, status, rpc, code, text)

    @staticmethod
    def _invalid(message: dict[str, Any]) -> str | None:
        data = message.get("data", {})
        if not message.get("token") or not isinstance(data, dict):
            return "message.token and message.data are required"
        if not all(isinstance(v, str) for v in data.values()):
            return "Invalid value at 'message.data': data values must be strings"
        android = message.get("android", {})
        if android.get("priority") not in (None, "high", "normal"):
            return "Invalid value at 'message.android.priority'"
        if "ttl" in android and not TTL.match(str(android["ttl"])):
            return "Invalid value at 'message.android.ttl'"
        return None

    @staticmethod
    def _error(sent: Sent, status: int, rpc: str, code: str | None, text: str) -> web.Response:
        sent.status = status
        error: dict[str, Any] = {"code": status, "message": text, "status": rpc}
        if code:
            error["details"] = [
                {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}
            ]
        headers = {"Retry-After": "1"} if status == 429 else None
        return web.json_response({"error": error}, status=status, headers=headers)
