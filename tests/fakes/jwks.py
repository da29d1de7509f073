"""A fake Supabase Auth on 127.0.0.1: JWKS with real keys, `GET /auth/v1/user`, and a signer.

`FakeSupabaseAuth.url` plays SUPABASE_URL: the issuer is `{url}/auth/v1`. Keys are real ES256
(P-256) and RS256 keys from `cryptography`; tokens look like Supabase access tokens.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PROJECT_SECRET = "fake-project-hs256-secret-with-more-than-32-chars"
ANON_KEY = "fake-anon-key"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SigningKey:
    """A real asymmetric key with a kid: signs tokens, publishes its public JWK."""

    kid: str
    alg: str = "ES256"
    private: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.private is None:
            self.private = (
                ec.generate_private_key(ec.SECP256R1())
                if self.alg == "ES256"
                else rsa.generate_private_key(public_exponent=65537, key_size=2048)
            )

    def jwk(self) -> dict[str, Any]:
        algorithm = (
            jwt.algorithms.ECAlgorithm if self.alg == "ES256" else jwt.algorithms.RSAAlgorithm
        )
        data: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return data | {"kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        headers = {"kid": self.kid} | header
        return jwt.encode(claims, self.private, algorithm=self.alg, headers=headers)


def hs256(claims: dict[str, Any], secret: str | bytes, **header: Any) -> str:
    """An HS256 token built by hand (PyJWT refuses PEM keys as HMAC secrets, attackers don't)."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"} | header).encode())
    body = b64url(json.dumps(claims).encode())
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(mac)}"


def unsigned(claims: dict[str, Any], **header: Any) -> str:
    head = b64url(json.dumps({"alg": "none", "typ": "JWT"} | header).encode())
    return f"{head}.{b64url(json.dumps(claims).encode())}."


def claims(
    issuer_base: str,
    user_id: uuid.UUID | str,
    session_id: uuid.UUID | str | None = None,
    *,
    ttl: int = 3600,
    **overrides: Any,
) -> dict[str, Any]:
    """Claims shaped like a Supabase access token; an override of None removes the claim."""
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": f"{issuer_base}/auth/v1",
        "aud": "authenticated",
        "sub": str(user_id),
        "exp": now + ttl,
        "iat": now,
        "role": "authenticated",
        "aal": "aal1",
        "session_id": str(session_id or uuid.uuid4()),
        "is_anonymous": False,
        "email": "someone@example.test",
        "phone": "",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def without(body: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in names}


class FakeSupabaseAuth:
    """JWKS at `/auth/v1/.well-known/jwks.json`, the user endpoint at `/auth/v1/user`."""

    def __init__(self, *, max_age: int | None = None) -> None:
        self.keys: list[SigningKey] = [SigningKey("es-key-1")]
        self.max_age = max_age
        self.jwks_status = 200
        self.user_status: int | None = None  # force an answer (e.g. 500) from /auth/v1/user
        self.answering = asyncio.Event()  # cleared: every request hangs until it is set again
        self.answering.set()
        self.jwks_fetches = 0
        self.user_calls: list[dict[str, str]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    @property
    def key(self) -> SigningKey:
        return self.keys[0]

    @property
    def issuer(self) -> str:
        return f"{self.url}/auth/v1"

    def claims(self, user_id: uuid.UUID | str, session_id: Any = None, **kw: Any) -> dict[str, Any]:
        return claims(self.url, user_id, session_id, **kw)

    async def start(self) -> FakeSupabaseAuth:
        app = web.Application()
        app.router.add_get("/auth/v1/.well-known/jwks.json", self._jwks)
        app.router.add_get("/auth/v1/user", self._user)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        self.answering.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeSupabaseAuth:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def _jwks(self, _: web.Request) -> web.Response:
        self.jwks_fetches += 1
        await self.answering.wait()
        if self.jwks_status != 200:
            return web.json_response({"error": "down"}, status=self.jwks_status)
        headers = {"Cache-Control": f"public, max-age={self.max_age}"} if self.max_age else {}
        return web.json_response({"keys": [k.jwk() for k in self.keys]}, headers=headers)

    async def _user(self, request: web.Request) -> web.Response:
        """Like GoTrue: the apikey must be the anon key, the bearer a token it signed."""
        self.user_calls.append({"apikey": request.headers.get("apikey", "")})
        await self.answering.wait()
        if self.user_status is not None:
            return web.json_response({"msg": "forced"}, status=self.user_status)
        if request.headers.get("apikey") != ANON_KEY:
            return web.json_response({"message": "Invalid API key"}, status=401)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        try:
            body = jwt.decode(token, PROJECT_SECRET, algorithms=["HS256"], audience="authenticated")
        except jwt.PyJWTError:
            return web.json_response(
                {"code": 403, "error_code": "bad_jwt", "msg": "invalid JWT"}, status=403
            )
        return web.json_response({"id": body["sub"], "aud": "authenticated", "role": body["role"]})
