"""Supabase access-token verification: HS256 secret (local stacks), JWKS, or GET /auth/v1/user.

The method comes from configuration, never from the token: with a JWT secret only HS256 is
accepted; otherwise ES256/RS256 against the project's JWKS (keys typed by the JWKS itself), and
HS256 only through the Auth server when an anon key is configured.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import aiohttp
import jwt

from orchestrator.config import ConfigError, Settings

JWKS_ALGORITHMS: dict[tuple[Any, Any], str] = {("EC", "P-256"): "ES256", ("RSA", None): "RS256"}
JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
MAX_TOKEN_CHARS = 7168
MAX_BODY = 256 * 1024
FAILURE_BACKOFF = 1.0  # seconds between JWKS attempts while it is unreachable
MIN_SECRET_BYTES = 32
AUDIENCE = "authenticated"
JWT_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidAudienceError, "bad_audience"),
    (jwt.InvalidIssuerError, "bad_issuer"),
    (jwt.InvalidSignatureError, "bad_signature"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
)


class AuthError(Exception):
    """The request carries no acceptable token (401). `reason` is a stable code for logs."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AuthUnavailable(Exception):
    """The JWKS or the Auth server could not be reached (503)."""


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: UUID
    session_id: UUID | None
    claims: Mapping[str, Any]


class Verifier(Protocol):
    async def verify(self, token: str) -> Identity: ...

    async def close(self) -> None: ...


def bearer_token(values: list[str]) -> str:
    """The credentials of exactly one `Authorization: Bearer …` header (scheme in any case)."""
    if not values:
        raise AuthError("missing")
    if len(values) > 1:
        raise AuthError("malformed")
    scheme, _, credentials = values[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthError("wrong_scheme")
    token = credentials.strip()
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthError("oversized")
    if not JWT_SHAPE.match(token):
        raise AuthError("malformed")
    return token


@dataclass(frozen=True, slots=True)
class VerifierConfig:
    supabase_url: str
    jwt_secret: str | None = None
    anon_key: str | None = None
    require_session: bool = True
    leeway: float = 10.0
    jwks_ttl: float = 600.0  # never more than 10 minutes
    refetch_interval: float = 30.0  # at most one refetch for unknown kids per interval
    http_timeout: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> VerifierConfig:
        if not settings.supabase_url:
            raise ConfigError("SUPABASE_URL is required by the token server (the JWT issuer)")
        secret = settings.supabase_jwt_secret
        if secret is not None and len(secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError("SUPABASE_JWT_SECRET must be at least 32 characters")
        return cls(
            supabase_url=settings.supabase_url,
            jwt_secret=settings.supabase_jwt_secret,
            anon_key=settings.supabase_anon_key,
            require_session=settings.auth_check_session,
        )

    @property
    def issuer(self) -> str:
        return f"{self.supabase_url}/auth/v1"


class SupabaseVerifier:
    def __init__(self, config: VerifierConfig) -> None:
        self.config = config
        self.jwks_fetches = 0
        self._keys: dict[str, tuple[str, Any]] = {}  # kid -> (algorithm, public key)
        self._expires = 0.0
        self._last_refetch = -1e9  # last fetch caused by an unknown kid
        self._retry_at = 0.0
        self._lock = asyncio.Lock()
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def verify(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed") from None
        alg, kid = header.get("alg"), header.get("kid")
        if self.config.jwt_secret is not None:
            if alg != "HS256":
                raise AuthError("unsupported_alg")
            return self._claims(token, self.config.jwt_secret, "HS256")
        if alg == "HS256" and self.config.anon_key is not None:
            return await self._via_auth_server(token)
        if alg not in ("ES256", "RS256") or not isinstance(kid, str):
            raise AuthError("unsupported_alg")
        key_alg, key = await self._key(kid)
        if key_alg != alg:
            raise AuthError("alg_mismatch")
        return self._claims(token, key, alg)

    def _claims(self, token: str, key: Any, alg: str, *, verify: bool = True) -> Identity:
        options: dict[str, Any] = {
            "require": ["exp", "sub", "aud", "iss"],
            "enforce_minimum_key_length": True,
        }
        if not verify:  # the Auth server already checked the signature
            options |= {
                "verify_signature": False,
                "verify_exp": True,
                "verify_nbf": True,
                "verify_iat": True,
                "verify_aud": True,
                "verify_iss": True,
            }
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=AUDIENCE,
                issuer=self.config.issuer,
                leeway=self.config.leeway,
                options=options,  # type: ignore[arg-type]
            )
        except jwt.PyJWTError as exc:
            reason = next((r for kind, r in JWT_ERRORS if isinstance(exc, kind)), "invalid")
            raise AuthError(reason) from None
        if claims.get("role") != "authenticated":
            raise AuthError("bad_role")
        user_id = _uuid(claims.get("sub"), "bad_subject")
        session = claims.get("session_id")
        session_id = None if session is None else _uuid(session, "bad_session")
        if self.config.require_session and session_id is None:
            raise AuthError("no_session")
        return Identity(user_id, session_id, claims)

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            timeout = aiohttp.ClientTimeout(total=self.config.http_timeout)
            self._http = aiohttp.ClientSession(timeout=timeout)
        return self._http

    async def _key(self, kid: str) -> tuple[str, Any]:
        async with self._lock:
            now = time.monotonic()
            if now >= self._expires:
                await self._fetch_jwks(now)
            elif kid not in self._keys and now - self._last_refetch >= self.config.refetch_interval:
                self._last_refetch = now
                await self._fetch_jwks(now)
        found = self._keys.get(kid)
        if found is None:
            raise AuthError("unknown_kid")
        return found

    async def _fetch_jwks(self, now: float) -> None:
        if now < self._retry_at:
            raise AuthUnavailable("JWKS unreachable (backing off)")
        self._retry_at = now + FAILURE_BACKOFF
        self.jwks_fetches += 1
        url = f"{self.config.issuer}/.well-known/jwks.json"
        status, document, headers = await self._get_json(url, {}, "JWKS")
        if status != 200:
            raise AuthUnavailable(f"JWKS answered {status}")
        self._retry_at = 0.0
        max_age = _max_age(headers.get("Cache-Control", ""))
        keys: dict[str, tuple[str, Any]] = {}
        for jwk in document.get("keys", []) if isinstance(document, dict) else []:
            parsed = _public_key(jwk)
            if parsed is not None:
                keys[jwk["kid"]] = parsed
        self._keys = keys
        ttl = self.config.jwks_ttl if max_age is None else min(max_age, self.config.jwks_ttl)
        self._expires = now + ttl

    async def _via_auth_server(self, token: str) -> Identity:
        assert self.config.anon_key is not None
        identity = self._claims(token, None, "HS256", verify=False)  # cheap checks first
        headers = {"apikey": self.config.anon_key, "Authorization": f"Bearer {token}"}
        status, user, _ = await self._get_json(f"{self.config.issuer}/user", headers, "Auth")
        if status in (401, 403):
            raise AuthError("rejected_by_auth_server")
        if status != 200:
            raise AuthUnavailable(f"Auth server answered {status}")
        if not isinstance(user, dict) or user.get("id") != str(identity.user_id):
            raise AuthError("rejected_by_auth_server")
        return identity

    async def _get_json(
        self, url: str, headers: Mapping[str, str], what: str
    ) -> tuple[int, Any, Mapping[str, str]]:
        try:
            async with self._session().get(url, headers=headers) as response:
                body = await response.content.read(MAX_BODY + 1)
                if len(body) > MAX_BODY:
                    raise AuthUnavailable(f"{what} answer too large")
                document = json.loads(body) if response.status == 200 else None
                return response.status, document, response.headers
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise AuthUnavailable(f"{what} unreachable: {type(exc).__name__}") from None


def _public_key(jwk: Any) -> tuple[str, Any] | None:
    """(algorithm, key) for an ES256/RS256 signing key with a kid; anything else is ignored."""
    if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
        return None
    alg = JWKS_ALGORITHMS.get((jwk.get("kty"), jwk.get("crv")))
    if alg is None or jwk.get("alg", alg) != alg or jwk.get("use", "sig") != "sig":
        return None
    try:
        return alg, jwt.PyJWK(jwk, algorithm=alg).key
    except jwt.PyJWTError:
        return None


def _max_age(cache_control: str) -> float | None:
    match = re.search(r"max-age=(\d+)", cache_control)
    return float(match.group(1)) if match else None


def _uuid(value: Any, reason: str) -> UUID:
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise AuthError(reason)
