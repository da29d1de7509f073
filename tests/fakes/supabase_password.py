"""A fake Supabase Auth password grant for the console's browser sign-in, over real HTTP.

`POST {url}/auth/v1/token?grant_type=password` with the `apikey` header and a JSON
`{email, password}` answers like GoTrue: `{access_token, token_type, expires_in, ...}` or
400 `invalid_grant`; CORS preflights are answered as GoTrue does for any origin. Tokens are
HS256 with the local-stack secret, shaped like Supabase access tokens (session_id,
app_metadata), so `SUPABASE_JWT_SECRET` mode verifies them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.jwks import ANON_KEY, claims, hs256

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "apikey, authorization, content-type, x-client-info",
}


@dataclass
class Account:
    password: str
    user_id: uuid.UUID
    session_id: uuid.UUID
    app_metadata: dict[str, Any] = field(default_factory=dict)


class FakePasswordAuth:
    def __init__(self, secret: str, *, ttl: int = 3600) -> None:
        self.secret = secret
        self.ttl = ttl
        self.accounts: dict[str, Account] = {}
        self.grants: list[str] = []  # emails that got a token
        self.url = ""
        self._runner: web.AppRunner | None = None

    def add(self, email: str, password: str, user_id: uuid.UUID, session_id: uuid.UUID, *,
            operator: bool) -> None:  # fmt: skip
        meta = {"provider": "email"} | ({"orchestrator_role": "operator"} if operator else {})
        self.accounts[email] = Account(password, user_id, session_id, meta)

    def token_for(self, email: str) -> str:
        account = self.accounts[email]
        body = claims(
            self.url,
            account.user_id,
            account.session_id,
            ttl=self.ttl,
            email=email,
            app_metadata=account.app_metadata,
            user_metadata={},
        )
        return hs256(body, self.secret)

    async def start(self) -> FakePasswordAuth:
        app = web.Application()
        app.router.add_route("OPTIONS", "/auth/v1/token", self._preflight)
        app.router.add_post("/auth/v1/token", self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _preflight(self, _: web.Request) -> web.Response:
        return web.Response(status=204, headers=CORS)

    async def _token(self, request: web.Request) -> web.Response:
        if request.headers.get("apikey") != ANON_KEY:
            return web.json_response({"message": "Invalid API key"}, status=401, headers=CORS)
        if request.query.get("grant_type") != "password":
            return web.json_response({"error": "unsupported_grant_type"}, status=400, headers=CORS)
        body = await request.json()
        account = self.accounts.get(str(body.get("email")))
        if account is None or account.password != body.get("password"):
            problem = {"error": "invalid_grant", "error_description": "Invalid login credentials"}
            return web.json_response(problem, status=400, headers=CORS)
        self.grants.append(str(body["email"]))
        answer = {
            "access_token": self.token_for(str(body["email"])),
            "token_type": "bearer",
            "expires_in": self.ttl,
            "refresh_token": uuid.uuid4().hex,
            "user": {"id": str(account.user_id), "app_metadata": account.app_metadata},
        }
        return web.json_response(answer, headers=CORS)
