"""The Supabase JWT verifier against a fake Auth server on 127.0.0.1 (real keys, real HTTP)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator.adapters.auth.jwt_verifier import (
    MAX_TOKEN_CHARS,
    AuthError,
    AuthUnavailable,
    SupabaseVerifier,
    VerifierConfig,
    bearer_token,
)
from orchestrator.config import ConfigError, Settings
from tests.fakes.jwks import (
    ANON_KEY,
    PROJECT_SECRET,
    FakeSupabaseAuth,
    SigningKey,
    b64url,
    hs256,
    unsigned,
    without,
)
from tests.support.wait import wait_for

LOCAL_SECRET = "local-stack-secret-at-least-32-characters-long"


@pytest.fixture
async def auth() -> AsyncIterator[FakeSupabaseAuth]:
    async with FakeSupabaseAuth() as fake:
        yield fake


def verifier(auth: FakeSupabaseAuth, **config: Any) -> SupabaseVerifier:
    return SupabaseVerifier(VerifierConfig(supabase_url=auth.url, **config))


async def reason(v: SupabaseVerifier, token: str) -> str:
    with pytest.raises(AuthError) as caught:
        await v.verify(token)
    return caught.value.reason


async def test_valid_es256_token_gives_identity(auth: FakeSupabaseAuth) -> None:
    user, session = uuid.uuid4(), uuid.uuid4()
    v = verifier(auth)
    try:
        identity = await v.verify(auth.key.sign(auth.claims(user, session)))
        assert (identity.user_id, identity.session_id) == (user, session)
        assert identity.claims["role"] == "authenticated"
    finally:
        await v.close()


async def test_rs256_key_from_jwks_is_accepted(auth: FakeSupabaseAuth) -> None:
    rsa_key = SigningKey("rsa-key", alg="RS256")
    auth.keys.append(rsa_key)
    v = verifier(auth)
    try:
        assert (await v.verify(rsa_key.sign(auth.claims(uuid.uuid4())))).session_id
        # The token's header may not pick another algorithm than the key's.
        es_signed = auth.key.sign(auth.claims(uuid.uuid4()), kid="rsa-key")
        assert await reason(v, es_signed) == "alg_mismatch"
    finally:
        await v.close()


def matrix(auth: FakeSupabaseAuth) -> dict[str, tuple[str, str]]:
    """name -> (token, expected reason); every token here must be refused."""
    user = uuid.uuid4()
    now = int(time.time())
    key = auth.key
    good = key.sign(auth.claims(user))
    head, body, sig = good.split(".")
    es384_head = b64url(json.dumps({"alg": "ES384", "kid": key.kid}).encode())
    tampered_sig = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    return {
        "expired": (key.sign(auth.claims(user, exp=now - 60, iat=now - 3660)), "expired"),
        "not yet valid": (key.sign(auth.claims(user, nbf=now + 300, iat=now + 300)),
                          "not_yet_valid"),
        "wrong aud": (key.sign(auth.claims(user, aud="service")), "bad_audience"),
        "foreign iss": (key.sign(auth.claims(user, iss="https://evil.example/auth/v1")),
                        "bad_issuer"),
        "role anon": (key.sign(auth.claims(user, role="anon")), "bad_role"),
        "role service_role": (key.sign(auth.claims(user, role="service_role")), "bad_role"),
        "missing sub": (key.sign(auth.claims(user, sub=None)), "missing_claim"),
        "sub not a uuid": (key.sign(auth.claims(user, sub="admin")), "bad_subject"),
        "missing exp": (key.sign(auth.claims(user, exp=None)), "missing_claim"),
        "missing session": (key.sign(without(auth.claims(user), "session_id")), "no_session"),
        "alg none": (unsigned(auth.claims(user), kid=key.kid), "unsupported_alg"),
        "hs256 with the real kid": (hs256(auth.claims(user), key.public_pem(), kid=key.kid),
                                    "unsupported_alg"),
        "different key, same kid": (SigningKey(key.kid).sign(auth.claims(user)),
                                    "bad_signature"),
        "tampered signature": (f"{head}.{body}.{tampered_sig}", "bad_signature"),
        "tampered claims": (
            f"{head}.{hs256(auth.claims(uuid.uuid4()), 'x').split('.')[1]}.{sig}", "bad_signature"
        ),
        "es384 header": (f"{es384_head}.{body}.{sig}", "unsupported_alg"),
        "garbage": ("not.a.jwt", "malformed"),
    }  # fmt: skip


async def test_jwt_matrix_is_refused(auth: FakeSupabaseAuth) -> None:
    v = verifier(auth)
    try:
        for name, (token, expected) in matrix(auth).items():
            assert await reason(v, token) == expected, name
        assert auth.jwks_fetches == 1  # one fetch served the whole matrix
    finally:
        await v.close()


async def test_unknown_kid_refetches_once_then_rejects(auth: FakeSupabaseAuth) -> None:
    v = verifier(auth, refetch_interval=60)
    try:
        await v.verify(auth.key.sign(auth.claims(uuid.uuid4())))
        assert auth.jwks_fetches == 1
        stranger = SigningKey("unknown-kid")
        assert await reason(v, stranger.sign(auth.claims(uuid.uuid4()))) == "unknown_kid"
        assert auth.jwks_fetches == 2
        # Within the refetch interval, unknown kids no longer reach the JWKS endpoint.
        for _ in range(5):
            assert await reason(v, stranger.sign(auth.claims(uuid.uuid4()))) == "unknown_kid"
        assert auth.jwks_fetches == 2
    finally:
        await v.close()


async def test_rotated_key_is_found_by_refetch(auth: FakeSupabaseAuth) -> None:
    v = verifier(auth, refetch_interval=0.0)
    try:
        await v.verify(auth.key.sign(auth.claims(uuid.uuid4())))
        rotated = SigningKey("es-key-2")
        auth.keys.append(rotated)
        assert (await v.verify(rotated.sign(auth.claims(uuid.uuid4())))).user_id
        assert auth.jwks_fetches == 2
    finally:
        await v.close()


async def test_jwks_cache_expires_and_honours_max_age() -> None:
    async with FakeSupabaseAuth(max_age=1) as auth:
        v = verifier(auth, jwks_ttl=600)
        try:
            token = auth.key.sign(auth.claims(uuid.uuid4()))
            await v.verify(token)
            await v.verify(token)
            assert auth.jwks_fetches == 1
            # max-age=1 caps the cache (jwks_ttl is 600): a later verify refetches.

            async def refetched() -> bool:
                await v.verify(token)
                return auth.jwks_fetches == 2

            await wait_for(refetched, timeout=5, interval=0.1)
            # A key removed from the JWKS stops verifying once the cache has been refreshed.
            auth.keys = [SigningKey("es-key-3")]

            async def refused() -> bool:
                try:
                    await v.verify(token)
                except AuthError as exc:
                    return exc.reason == "unknown_kid"
                return False

            await wait_for(refused, timeout=5, interval=0.1)
        finally:
            await v.close()


async def test_jwks_down_is_unavailable_not_unauthorized(auth: FakeSupabaseAuth) -> None:
    auth.jwks_status = 503
    v = verifier(auth)
    try:
        token = auth.key.sign(auth.claims(uuid.uuid4()))
        with pytest.raises(AuthUnavailable):
            await v.verify(token)
        fetches = auth.jwks_fetches
        with pytest.raises(AuthUnavailable):  # backing off: no hammering of the endpoint
            await v.verify(token)
        assert auth.jwks_fetches == fetches
    finally:
        await v.close()


async def test_hanging_jwks_times_out(auth: FakeSupabaseAuth) -> None:
    auth.answering.clear()
    v = verifier(auth, http_timeout=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(AuthUnavailable):
            await v.verify(auth.key.sign(auth.claims(uuid.uuid4())))
        assert time.monotonic() - started < 3
    finally:
        auth.answering.set()
        await v.close()


async def test_secret_mode_accepts_only_hs256(auth: FakeSupabaseAuth) -> None:
    v = verifier(auth, jwt_secret=LOCAL_SECRET)
    try:
        user = uuid.uuid4()
        assert (await v.verify(hs256(auth.claims(user), LOCAL_SECRET))).user_id == user
        assert await reason(v, hs256(auth.claims(user), LOCAL_SECRET + "x")) == "bad_signature"
        assert await reason(v, auth.key.sign(auth.claims(user))) == "unsupported_alg"
        assert await reason(v, unsigned(auth.claims(user))) == "unsupported_alg"
        assert await reason(v, hs256(auth.claims(user, role="anon"), LOCAL_SECRET)) == "bad_role"
        assert auth.jwks_fetches == 0
    finally:
        await v.close()


async def test_hs256_through_auth_server(auth: FakeSupabaseAuth) -> None:
    v = verifier(auth, anon_key=ANON_KEY)
    try:
        user = uuid.uuid4()
        assert (await v.verify(hs256(auth.claims(user), PROJECT_SECRET))).user_id == user
        assert auth.user_calls == [{"apikey": ANON_KEY}]
        forged = hs256(auth.claims(user), "attacker-secret-attacker-secret-attacker")
        assert await reason(v, forged) == "rejected_by_auth_server"
        # Claims are checked locally first: an expired token never reaches the Auth server.
        calls = len(auth.user_calls)
        expired = hs256(auth.claims(user, exp=int(time.time()) - 60), PROJECT_SECRET)
        assert await reason(v, expired) == "expired"
        assert len(auth.user_calls) == calls
        # ES256 still goes to the JWKS in this mode.
        assert (await v.verify(auth.key.sign(auth.claims(user)))).user_id == user
        auth.user_status = 500
        with pytest.raises(AuthUnavailable):
            await v.verify(hs256(auth.claims(user), PROJECT_SECRET))
    finally:
        await v.close()


async def test_hs256_without_anon_key_never_calls_auth_server(auth: FakeSupabaseAuth) -> None:
    v = verifier(auth)
    try:
        token = hs256(auth.claims(uuid.uuid4()), PROJECT_SECRET)
        assert await reason(v, token) == "unsupported_alg"
        assert auth.user_calls == []
    finally:
        await v.close()


async def test_session_optional_when_not_checked(auth: FakeSupabaseAuth) -> None:
    v = verifier(auth, require_session=False)
    try:
        body = without(auth.claims(uuid.uuid4()), "session_id")
        assert (await v.verify(auth.key.sign(body))).session_id is None
    finally:
        await v.close()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], "missing"),
        (["Basic dXNlcjpwYXNz"], "wrong_scheme"),
        (["Token a.b.c"], "wrong_scheme"),
        (["Bearer"], "malformed"),
        (["Bearer "], "malformed"),
        (["Bearer a.b"], "malformed"),
        (["Bearer a.b.c d"], "malformed"),
        (["Bearer \x00.b.c"], "malformed"),
        (["Bearer a.b.c", "Bearer a.b.c"], "malformed"),
        ([f"Bearer {'a' * MAX_TOKEN_CHARS}.b.c"], "oversized"),
    ],
)
def test_bearer_header_parsing_refuses(values: list[str], expected: str) -> None:
    with pytest.raises(AuthError) as caught:
        bearer_token(values)
    assert caught.value.reason == expected


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_is_case_insensitive(scheme: str) -> None:
    assert bearer_token([f"{scheme}  aa.bb.cc "]) == "aa.bb.cc"


def test_config_from_settings_validates() -> None:
    with pytest.raises(ConfigError, match="SUPABASE_URL"):
        VerifierConfig.from_settings(Settings())
    with pytest.raises(ConfigError, match="SUPABASE_JWT_SECRET"):
        VerifierConfig.from_settings(
            Settings(supabase_url="http://127.0.0.1:1", supabase_jwt_secret="short")
        )
    config = VerifierConfig.from_settings(Settings(supabase_url="https://p.supabase.co"))
    assert config.issuer == "https://p.supabase.co/auth/v1" and config.jwks_ttl <= 600
