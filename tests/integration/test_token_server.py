"""The token server over real HTTP on 127.0.0.1 against the real database and a fake Supabase Auth.

Every request goes through aiohttp's client to an app started with `start_site`; the JWKS is a
local server with real ES256/RS256 keys; tokens are decoded and their HMAC checked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import structlog
import trustme
from aiohttp import web
from multidict import CIMultiDict

from orchestrator.adapters.ratelimit.limiter import RateLimiter, client_ip
from orchestrator.config import ConfigError, Settings
from orchestrator.domain.push import rfc3339
from orchestrator.metrics import Metrics
from orchestrator.tokenserver.app import Limits, build_app, serve, start_site
from orchestrator.tokenserver.openapi import SPEC
from tests.fakes.agora_decoder import decode_006, decode_007
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
from tests.support.db import client_update, create_session, create_user, insert_call
from tests.support.services import free_port, port_open, require
from tests.support.tcp_proxy import TcpProxy, proxied
from tests.support.wait import wait_for

pytestmark = pytest.mark.postgres

APP_ID = "970CA35de60c44645bbae8a215061b33"  # mixed case: kept exactly as configured
APP_CERT = "5CFd2fd1755d40ecb72977518be15d3b"
LOCAL_SECRET = "local-stack-jwt-secret-with-at-least-32-chars"
PROBLEMS = "https://call-orchestrator.dev/problems/"
PROBLEM_JSON = "application/problem+json"


async def _no_reset(_: asyncpg.Connection) -> None:
    return None


# --- harness -------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: Any
    content_type: str

    @property
    def problem(self) -> str:
        assert self.content_type == PROBLEM_JSON, (self.status, self.content_type, self.body)
        assert self.body["status"] == self.status
        return str(self.body["type"]).removeprefix(PROBLEMS)


@dataclass
class Running:
    url: str
    app: web.Application
    http: aiohttp.ClientSession

    async def request(self, method: str, path: str, **kw: Any) -> Reply:
        async with self.http.request(method, self.url + path, **kw) as response:
            text = await response.text()
            ctype = response.content_type
            body = json.loads(text) if ctype in ("application/json", PROBLEM_JSON) else text
            return Reply(response.status, response.headers, body, ctype)

    async def token(
        self,
        call_id: uuid.UUID | str,
        jwt: str | None = None,
        *,
        authorization: str | None = None,
        headers: Mapping[str, str] | CIMultiDict[str] | None = None,
        **kw: Any,
    ) -> Reply:
        h: CIMultiDict[str] = CIMultiDict(headers or {})
        if jwt is not None:
            h["Authorization"] = f"Bearer {jwt}"
        if authorization is not None:
            h["Authorization"] = authorization
        return await self.request("POST", f"/v1/calls/{call_id}/agora-token", headers=h, **kw)


def make_settings(auth: FakeSupabaseAuth, dsn: str, **changes: Any) -> Settings:
    base = Settings(
        database_url=dsn,
        supabase_url=auth.url,
        agora_app_id=APP_ID,
        agora_app_cert=APP_CERT,
        host="127.0.0.1",
        port=0,
        rate_limit_per_user="1000/minute",
        rate_limit_per_ip="10000/minute",
        # These tests are about tokens, limits and auth: the callee asks while the call rings.
        # The default (the callee waits for `accepted`) is tests/integration/test_abuse_tokens.py.
        callee_token_while_ringing=True,
    )
    return base.with_overrides(**changes)


@asynccontextmanager
async def running(
    settings: Settings,
    pool: asyncpg.Pool,
    *,
    ssl_context: ssl.SSLContext | None = None,
    **kw: Any,
) -> AsyncIterator[Running]:
    app = build_app(settings, pool, Metrics(), **kw)
    runner = await start_site(app, settings)
    port = runner.addresses[0][1]
    scheme = "https" if settings.tls_cert_file else "http"
    connector = aiohttp.TCPConnector(ssl=ssl_context) if ssl_context else None
    try:
        async with aiohttp.ClientSession(connector=connector) as http:
            yield Running(f"{scheme}://127.0.0.1:{port}", app, http)
    finally:
        await runner.cleanup()


@pytest.fixture(scope="session")
async def auth() -> AsyncIterator[FakeSupabaseAuth]:
    async with FakeSupabaseAuth() as fake:
        yield fake


@pytest.fixture(scope="session")
async def pool(migrated_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(migrated_dsn, min_size=1, max_size=4, reset=_no_reset) as p:
        yield p


@pytest.fixture(scope="session")
async def server(
    auth: FakeSupabaseAuth, pool: asyncpg.Pool, migrated_dsn: str
) -> AsyncIterator[Running]:
    async with running(make_settings(auth, migrated_dsn), pool) as srv:
        yield srv


@dataclass
class Call:
    id: uuid.UUID
    caller: uuid.UUID
    callee: uuid.UUID
    caller_session: uuid.UUID
    callee_session: uuid.UUID


async def new_call(db: asyncpg.Connection, status: str = "ringing") -> Call:
    caller, callee = await create_user(db), await create_user(db)
    sessions = await create_session(db, caller), await create_session(db, callee)
    call_id = await insert_call(db, caller, callee)
    if status in ("accepted", "ended"):
        await client_update(db, callee, call_id, "accepted")
    if status == "ended":
        await client_update(db, caller, call_id, "ended", "completed")
    return Call(call_id, caller, callee, *sessions)


def caller_jwt(auth: FakeSupabaseAuth, call: Call, **claims: Any) -> str:
    return auth.key.sign(auth.claims(call.caller, call.caller_session, **claims))


def callee_jwt(auth: FakeSupabaseAuth, call: Call, **claims: Any) -> str:
    return auth.key.sign(auth.claims(call.callee, call.callee_session, **claims))


async def audit_rows(db: asyncpg.Connection, call_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            "select actor_id, actor, event, from_status, to_status, end_reason, detail"
            " from public.call_audit where call_id = $1 and event = 'token_issued' order by id",
            call_id,
        )
    )


def epoch(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())


# --- issuing ---------------------------------------------------------------------------------


async def test_caller_and_callee_get_publisher_tokens(
    server: Running, auth: FakeSupabaseAuth, db: asyncpg.Connection
) -> None:
    call = await new_call(db)
    before = int(time.time())
    for jwt, uid, actor, user in (
        (caller_jwt(auth, call), 1, "caller", call.caller),
        (callee_jwt(auth, call), 2, "callee", call.callee),
    ):
        reply = await server.token(call.id, jwt)
        assert reply.status == 200, reply.body
        assert reply.content_type == "application/json"
        assert reply.headers["Cache-Control"] == "no-store"
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert "Strict-Transport-Security" not in reply.headers  # plain HTTP here
        body = reply.body
        assert set(body) == {"app_id", "channel", "uid", "token", "token_version", "expires_at"}
        assert body["app_id"] == APP_ID and body["channel"] == str(call.id)
        assert body["uid"] == uid and isinstance(body["uid"], int)
        assert body["token_version"] == "007"
        assert body["expires_at"].endswith(".000Z")
        decoded = decode_007(body["token"])
        assert decoded.signature_valid(APP_CERT)
        assert decoded.app_id == APP_ID
        assert before - 2 <= decoded.issue_ts <= int(time.time()) + 2
        assert decoded.expire == 300  # ringing: now + TTL
        assert decoded.issue_ts + decoded.expire == epoch(body["expires_at"])
        rtc = decoded.services[1]
        assert (rtc.channel, rtc.uid) == (str(call.id), str(uid))
        assert rtc.privileges == {1: 300, 2: 300, 3: 300, 4: 300}
        rows = await audit_rows(db, call.id)
        last = rows[-1]
        assert (last["actor_id"], last["actor"], last["from_status"], last["to_status"]) == (
            user, actor, "ringing", "ringing"
        )  # fmt: skip
        assert json.loads(last["detail"]) == {
            "uid": uid, "expires_at": body["expires_at"], "token_version": "007"
        }  # fmt: skip
    assert len(await audit_rows(db, call.id)) == 2


async def test_renewal_during_accepted_is_capped_by_max_call_seconds(
    auth: FakeSupabaseAuth, pool: asyncpg.Pool, migrated_dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(auth, migrated_dsn, max_call_seconds=120, token_ttl_seconds=300)
    async with running(settings, pool) as srv:
        call = await new_call(db, "accepted")
        accepted_at = await db.fetchval("select accepted_at from public.calls where id=$1", call.id)
        cap = int((accepted_at + timedelta(seconds=120)).timestamp())
        first = await srv.token(call.id, callee_jwt(auth, call))
        second = await srv.token(call.id, callee_jwt(auth, call))  # renewal
        for reply in (first, second):
            assert reply.status == 200, reply.body
            assert reply.body["expires_at"] == rfc3339(datetime.fromtimestamp(cap, UTC))
            decoded = decode_007(reply.body["token"])
            assert decoded.signature_valid(APP_CERT)
            assert decoded.issue_ts + decoded.expire == cap
            assert set(decoded.services[1].privileges.values()) == {decoded.expire}
        assert first.body["token"] != second.body["token"]
        rows = await audit_rows(db, call.id)
        assert [(r["from_status"], r["to_status"], r["actor"]) for r in rows] == [
            ("accepted", "accepted", "callee")
        ] * 2


async def test_call_past_max_duration_gets_409(
    auth: FakeSupabaseAuth, pool: asyncpg.Pool, migrated_dsn: str, db: asyncpg.Connection
) -> None:
    async with running(make_settings(auth, migrated_dsn, max_call_seconds=1), pool) as srv:
        call = await new_call(db, "accepted")

        async def refused() -> Reply | None:
            reply = await srv.token(call.id, caller_jwt(auth, call))
            return reply if reply.status == 409 else None

        reply = await wait_for(refused, timeout=5)
        assert reply.problem == "call-ended"
        assert "maximum duration" in reply.body["detail"]


async def test_ended_call_is_409_without_audit(
    server: Running, auth: FakeSupabaseAuth, db: asyncpg.Connection
) -> None:
    call = await new_call(db, "ended")
    reply = await server.token(call.id, caller_jwt(auth, call))
    assert reply.status == 409 and reply.problem == "call-ended"
    assert await audit_rows(db, call.id) == []


async def test_non_participant_and_unknown_call_look_alike(
    server: Running, auth: FakeSupabaseAuth, db: asyncpg.Connection
) -> None:
    call = await new_call(db)
    outsider = await create_user(db)
    session = await create_session(db, outsider)
    jwt = auth.key.sign(auth.claims(outsider, session))
    replies = [
        await server.token(call.id, jwt),
        await server.token(uuid.uuid4(), jwt),
        await server.token("not-a-uuid", jwt),
    ]
    for reply in replies:
        assert reply.status == 404 and reply.problem == "not-found"
    shapes = [{k: v for k, v in r.body.items() if k not in ("instance", "request_id")}
              for r in replies]  # fmt: skip
    assert shapes[0] == shapes[1] == shapes[2]
    assert await audit_rows(db, call.id) == []


async def test_token_version_006(
    auth: FakeSupabaseAuth, pool: asyncpg.Pool, migrated_dsn: str, db: asyncpg.Connection
) -> None:
    async with running(make_settings(auth, migrated_dsn, agora_token_version="006"), pool) as srv:
        call = await new_call(db)
        reply = await srv.token(call.id, callee_jwt(auth, call))
        assert reply.status == 200, reply.body
        assert reply.body["token_version"] == "006" and reply.body["token"].startswith("006")
        old = decode_006(reply.body["token"])
        assert old.valid_for(APP_CERT, str(call.id), "2") and old.app_id == APP_ID
        expires = epoch(reply.body["expires_at"])
        assert old.ts == expires and old.privileges == dict.fromkeys((1, 2, 3, 4), expires)
        rows = await audit_rows(db, call.id)
        assert json.loads(rows[-1]["detail"])["token_version"] == "006"


# --- authentication ----------------------------------------------------------------------------


def jwt_cases(auth: FakeSupabaseAuth, call: Call) -> dict[str, tuple[str | None, int]]:
    """name -> (Authorization header value or None, expected status) for the caller."""
    user, session = call.caller, call.caller_session
    now = int(time.time())
    key = auth.key
    sign = key.sign

    def c(**kw: Any) -> dict[str, Any]:
        return auth.claims(user, session, **kw)

    good = sign(c())
    head, body, sig = good.split(".")
    flipped = sig[:12] + ("A" if sig[12] != "A" else "B") + sig[13:]
    return {
        "valid": (f"Bearer {good}", 200),
        "scheme lower case": (f"bearer {good}", 200),
        "scheme upper case": (f"BEARER {good}", 200),
        "expired": (f"Bearer {sign(c(exp=now - 120, iat=now - 3720))}", 401),
        "not yet valid": (f"Bearer {sign(c(nbf=now + 600, iat=now + 600))}", 401),
        "wrong aud": (f"Bearer {sign(c(aud='anon'))}", 401),
        "foreign iss": (f"Bearer {sign(c(iss='https://other.supabase.co/auth/v1'))}", 401),
        "role anon": (f"Bearer {sign(c(role='anon'))}", 401),
        "missing sub": (f"Bearer {sign(c(sub=None))}", 401),
        "sub of another user": (f"Bearer {sign(c(sub=str(uuid.uuid4())))}", 401),
        "alg none": (f"Bearer {unsigned(c(), kid=key.kid)}", 401),
        "hs256 forged with the real kid": (f"Bearer {hs256(c(), key.public_pem(), kid=key.kid)}",
                                           401),
        "different key, same kid": (f"Bearer {SigningKey(key.kid).sign(c())}", 401),
        "tampered signature": (f"Bearer {head}.{body}.{flipped}", 401),
        "tampered claims": (f"Bearer {head}.{b64url(json.dumps(c(role='x')).encode())}.{sig}",
                            401),
        "garbage": ("Bearer garbage", 401),
        "garbage three parts": ("Bearer a.b.c", 401),
        "binary junk": ("Bearer \u00ff\u00fe.\u00fd.x", 401),
        "oversized": (f"Bearer {'a' * 7500}.b.c", 401),
        "missing header": (None, 401),
        "empty bearer": ("Bearer ", 401),
        "basic scheme": ("Basic dXNlcjpwYXNzd29yZA==", 401),
        "token scheme": (f"Token {good}", 401),
        "no scheme": (good, 401),
    }  # fmt: skip


CASE_NAMES = list(jwt_cases(FakeSupabaseAuth(), Call(*(uuid.uuid4(),) * 5)))


@pytest.mark.parametrize("case", CASE_NAMES)
async def test_jwt_matrix_only_valid_tokens_succeed(
    case: str, server: Running, auth: FakeSupabaseAuth, db: asyncpg.Connection
) -> None:
    call = await new_call(db)
    header, expected = jwt_cases(auth, call)[case]
    reply = await server.token(call.id, authorization=header)
    assert reply.status == expected, (case, reply.body)
    if expected == 401:
        assert reply.problem == "unauthorized"
        assert reply.headers["WWW-Authenticate"].startswith('Bearer realm="call-orchestrator"')
        assert await audit_rows(db, call.id) == []
    else:
        assert reply.body["uid"] == 1


async def test_oversized_header_is_refused_by_the_http_parser(
    server: Running, auth: FakeSupabaseAuth, db: asyncpg.Connection
) -> None:
    call = await new_call(db)
    reply = await server.token(call.id, authorization=f"Bearer {'a' * 9000}.b.c")
    assert reply.status in (400, 431)


async def test_two_authorization_headers_are_refused(
    server: Running, auth: FakeSupabaseAuth, db: asyncpg.Connection
) -> None:
    call = await new_call(db)
    jwt = caller_jwt(auth, call)
    headers: CIMultiDict[str] = CIMultiDict()
    headers.add("Authorization", f"Bearer {jwt}")
    headers.add("Authorization", f"Bearer {jwt}")
    reply = await server.token(call.id, headers=headers)
    assert reply.status == 401 and reply.problem == "unauthorized"


async def test_logged_out_session_gets_nothing(
    server: Running, auth: FakeSupabaseAuth, db: asyncpg.Connection
) -> None:
    call = await new_call(db)
    jwt = caller_jwt(auth, call)  # still unexpired after the logout below
    assert (await server.token(call.id, jwt)).status == 200
    await db.execute("delete from auth.sessions where id = $1", call.caller_session)
    reply = await server.token(call.id, jwt)
    assert reply.status == 401 and reply.problem == "unauthorized"
    assert "session" in reply.body["detail"]
    # A session of another user does not count either.
    other = await create_session(db, call.callee)
    reply = await server.token(call.id, auth.key.sign(auth.claims(call.caller, other)))
    assert reply.status == 401
    assert len(await audit_rows(db, call.id)) == 1


async def test_session_not_checked_when_disabled(
    auth: FakeSupabaseAuth, pool: asyncpg.Pool, migrated_dsn: str, db: asyncpg.Connection
) -> None:
    async with running(make_settings(auth, migrated_dsn, auth_check_session=False), pool) as srv:
        call = await new_call(db)
        await db.execute("delete from auth.sessions where id = $1", call.caller_session)
        assert (await srv.token(call.id, caller_jwt(auth, call))).status == 200
        no_session = auth.key.sign(without(auth.claims(call.caller), "session_id"))
        assert (await srv.token(call.id, no_session)).status == 200


async def test_unknown_kid_refetches_once_then_rejects(
    pool: asyncpg.Pool, migrated_dsn: str, db: asyncpg.Connection
) -> None:
    async with (
        FakeSupabaseAuth() as own,
        running(make_settings(own, migrated_dsn), pool) as srv,
    ):
        call = await new_call(db)
        assert (await srv.token(call.id, caller_jwt(own, call))).status == 200
        assert own.jwks_fetches == 1
        stranger = SigningKey("kid-nobody-published")
        jwt = stranger.sign(own.claims(call.caller, call.caller_session))
        assert (await srv.token(call.id, jwt)).status == 401
        assert own.jwks_fetches == 2  # refetched once for the unknown kid
        assert (await srv.token(call.id, jwt)).status == 401
        assert own.jwks_fetches == 2  # rate-limited: no refetch storm


async def test_jwks_down_is_503(
    pool: asyncpg.Pool, migrated_dsn: str, db: asyncpg.Connection
) -> None:
    async with FakeSupabaseAuth() as own:
        own.jwks_status = 500
        async with running(make_settings(own, migrated_dsn), pool) as srv:
            call = await new_call(db)
            reply = await srv.token(call.id, caller_jwt(own, call))
            assert reply.status == 503 and reply.problem == "dependency-unavailable"


async def test_hs256_secret_mode(
    auth: FakeSupabaseAuth, pool: asyncpg.Pool, migrated_dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(auth, migrated_dsn, supabase_jwt_secret=LOCAL_SECRET)
    async with running(settings, pool) as srv:
        call = await new_call(db)
        claims = auth.claims(call.caller, call.caller_session)
        assert (await srv.token(call.id, hs256(claims, LOCAL_SECRET))).status == 200
        assert (await srv.token(call.id, hs256(claims, LOCAL_SECRET + "!"))).status == 401
        # Configuration decides: a valid JWKS-signed token is not accepted in this mode.
        assert (await srv.token(call.id, caller_jwt(auth, call))).status == 401


async def test_hs256_through_auth_user_endpoint(
    pool: asyncpg.Pool, migrated_dsn: str, db: asyncpg.Connection
) -> None:
    async with FakeSupabaseAuth() as own:
        settings = make_settings(own, migrated_dsn, supabase_anon_key=ANON_KEY)
        async with running(settings, pool) as srv:
            call = await new_call(db)
            claims = own.claims(call.callee, call.callee_session)
            reply = await srv.token(call.id, hs256(claims, PROJECT_SECRET))
            assert reply.status == 200 and reply.body["uid"] == 2
            assert own.user_calls == [{"apikey": ANON_KEY}]
            forged = hs256(claims, "not-the-project-secret-not-the-project-secret")
            assert (await srv.token(call.id, forged)).status == 401
            assert (await srv.token(call.id, callee_jwt(own, call))).status == 200  # ES256 too
            own.user_status = 502
            reply = await srv.token(call.id, hs256(claims, PROJECT_SECRET))
            assert reply.status == 503 and reply.problem == "dependency-unavailable"


async def test_hs256_refused_without_anon_key(
    pool: asyncpg.Pool, migrated_dsn: str, db: asyncpg.Connection
) -> None:
    async with (
        FakeSupabaseAuth() as own,
        running(make_settings(own, migrated_dsn), pool) as srv,
    ):
        call = await new_call(db)
        claims = own.claims(call.caller, call.caller_session)
        assert (await srv.token(call.id, hs256(claims, PROJECT_SECRET))).status == 401
        assert own.user_calls == []


# --- rate limits -------------------------------------------------------------------------------


async def test_user_rate_limit_reached_and_recovered(
    auth: FakeSupabaseAuth, pool: asyncpg.Pool, migrated_dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(auth, migrated_dsn, rate_limit_per_user="2/second")
    async with running(settings, pool) as srv:
        call = await new_call(db)
        jwt = caller_jwt(auth, call)
        assert [(await srv.token(call.id, jwt)).status for _ in range(2)] == [200, 200]
        limited = await srv.token(call.id, jwt)
        assert limited.status == 429 and limited.problem == "rate-limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 2
        # The other participant has a budget of their own.
        assert (await srv.token(call.id, callee_jwt(auth, call))).status == 200

        async def recovered() -> bool:
            return (await srv.token(call.id, jwt)).status == 200

        await wait_for(recovered, timeout=5, interval=0.1)
        assert len(await audit_rows(db, call.id)) == 4


async def test_ip_rate_limit_behind_a_trusted_proxy(
    auth: FakeSupabaseAuth, pool: asyncpg.Pool, migrated_dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(auth, migrated_dsn, rate_limit_per_ip="2/minute", trusted_proxy_hops=1)
    async with running(settings, pool) as srv:
        call = await new_call(db)
        a, b = caller_jwt(auth, call), callee_jwt(auth, call)
        client = {"X-Forwarded-For": "198.51.100.7"}
        assert (await srv.token(call.id, a, headers=client)).status == 200
        assert (await srv.token(call.id, b, headers=client)).status == 200
        limited = await srv.token(call.id, a, headers=client)
        assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
        # A client-written entry left of the trusted hop changes nothing.
        spoofed = {"X-Forwarded-For": "10.1.2.3, 198.51.100.7"}
        assert (await srv.token(call.id, b, headers=spoofed)).status == 429
        other = {"X-Forwarded-For": "198.51.100.8"}
        assert (await srv.token(call.id, a, headers=other)).status == 200


async def test_forwarded_for_is_ignored_without_trusted_hops(
    auth: FakeSupabaseAuth, pool: asyncpg.Pool, migrated_dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(auth, migrated_dsn, rate_limit_per_ip="2/minute")
    async with running(settings, pool) as srv:
        call = await new_call(db)
        statuses = [
            (await srv.token(call.id, caller_jwt(auth, call),
                             headers={"X-Forwarded-For": f"203.0.113.{i}"})).status
            for i in range(3)
        ]  # fmt: skip
        assert statuses == [200, 200, 429]


def test_client_ip_selection() -> None:
    assert client_ip("10.0.0.1", [], 0) == "10.0.0.1"
    assert client_ip("10.0.0.1", ["1.1.1.1"], 0) == "10.0.0.1"
    assert client_ip("10.0.0.1", ["1.1.1.1, 2.2.2.2"], 1) == "2.2.2.2"
    assert client_ip("10.0.0.1", ["1.1.1.1", "2.2.2.2, 3.3.3.3"], 2) == "2.2.2.2"
    assert client_ip("10.0.0.1", ["2.2.2.2"], 2) == "10.0.0.1"  # fewer hops than trusted
    assert client_ip("10.0.0.1", ["not-an-ip"], 1) == "10.0.0.1"
    assert client_ip("10.0.0.1", ["2001:db8::1"], 1) == "2001:db8::1"


@pytest.mark.redis
async def test_redis_shares_limits_between_instances(
    auth: FakeSupabaseAuth, pool: asyncpg.Pool, migrated_dsn: str, db: asyncpg.Connection
) -> None:
    require("redis", port_open("127.0.0.1", 6379), "no Redis on 127.0.0.1:6379")
    settings = make_settings(auth, migrated_dsn, redis_url="redis://127.0.0.1:6379")
    prefix = f"test-{uuid.uuid4().hex}"

    def limiter() -> RateLimiter:
        return RateLimiter("3/minute", "1000/minute", "async+redis://127.0.0.1:6379",
                           key_prefix=prefix)  # fmt: skip

    async with (
        running(settings, pool, limiter=limiter()) as one,
        running(settings, pool, limiter=limiter()) as two,
    ):
        call = await new_call(db)
        jwt = caller_jwt(auth, call)
        statuses = [(await srv.token(call.id, jwt)).status for srv in (one, two, one, two)]
        assert statuses == [200, 200, 200, 429]
        ready = await one.request("GET", "/readyz")
        assert ready.status == 200 and ready.body["checks"]["rate_limit_storage"] == "ok"
    down = RateLimiter("3/minute", "3/minute", f"async+redis://127.0.0.1:{free_port()}")
    async with running(settings, pool, limiter=down) as srv:
        call = await new_call(db)
        reply = await srv.token(call.id, caller_jwt(auth, call))
        assert reply.status == 503 and reply.problem == "dependency-unavailable"
        ready = await srv.request("GET", "/readyz")
        assert ready.status == 503 and ready.body["checks"]["rate_limit_storage"] == "down"


# --- database outage -------------------------------------------------------------------------


async def test_database_down_is_503_and_not_ready_then_recovers(
    auth: FakeSupabaseAuth, migrated_dsn: str, db: asyncpg.Connection
) -> None:
    proxy = TcpProxy(proxied(migrated_dsn, 0)[1])
    await proxy.start()
    dsn, _ = proxied(migrated_dsn, proxy.port)
    settings = make_settings(auth, dsn)
    limits = Limits(db_timeout=2.0, readiness_timeout=1.0)
    async with (
        asyncpg.create_pool(dsn, min_size=0, max_size=2, reset=_no_reset) as pool,
        running(settings, pool, limits=limits) as srv,
    ):
        call = await new_call(db)
        jwt = caller_jwt(auth, call)
        assert (await srv.token(call.id, jwt)).status == 200
        assert (await srv.request("GET", "/readyz")).body["ready"] is True
        await proxy.stop()
        reply = await srv.token(call.id, jwt)
        assert reply.status == 503 and reply.problem == "dependency-unavailable"
        ready = await srv.request("GET", "/readyz")
        assert ready.status == 503 and ready.body["ready"] is False
        assert ready.body["checks"] == {"database": "down"}
        assert (await srv.request("GET", "/healthz")).status == 200  # alive, not ready
        await proxy.start()  # same port

        async def ready_again() -> bool:
            return (await srv.request("GET", "/readyz")).status == 200

        await wait_for(ready_again, timeout=10, interval=0.1)
        assert (await srv.token(call.id, jwt)).status == 200
    await proxy.stop()


async def test_closed_database_port_is_503(
    auth: FakeSupabaseAuth, migrated_dsn: str, db: asyncpg.Connection
) -> None:
    dsn, _ = proxied(migrated_dsn, free_port())
    async with (
        asyncpg.create_pool(dsn, min_size=0, max_size=1, reset=_no_reset) as pool,
        running(make_settings(auth, dsn), pool) as srv,
    ):
        call = await new_call(db)
        reply = await srv.token(call.id, caller_jwt(auth, call))
        assert reply.status == 503 and reply.problem == "dependency-unavailable"
        assert (await srv.request("GET", "/readyz")).status == 503


# --- transport, HTTP details -------------------------------------------------------------------


async def test_tls_with_trustme_certificate(
    auth: FakeSupabaseAuth, pool: asyncpg.Pool, migrated_dsn: str, db: asyncpg.Connection,
    tmp_path: Path,
) -> None:  # fmt: skip
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    settings = make_settings(
        auth, migrated_dsn, tls_cert_file=str(cert_file), tls_key_file=str(key_file)
    )
    async with running(settings, pool, ssl_context=client_ctx) as srv:
        assert srv.url.startswith("https://")
        health = await srv.request("GET", "/healthz")
        assert health.status == 200
        assert health.headers["Strict-Transport-Security"].startswith("max-age=")
        call = await new_call(db)
        reply = await srv.token(call.id, caller_jwt(auth, call))
        assert reply.status == 200 and "Strict-Transport-Security" in reply.headers
        assert decode_007(reply.body["token"]).signature_valid(APP_CERT)
        plain = srv.url.replace("https://", "http://")
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.ClientError):
                async with http.get(plain + "/healthz") as response:
                    await response.read()


async def test_http_errors_are_problem_documents(
    server: Running, auth: FakeSupabaseAuth, db: asyncpg.Connection
) -> None:
    unknown = await server.request("GET", "/nope")
    assert unknown.status == 404 and unknown.problem == "not-found"
    wrong_method = await server.request("GET", f"/v1/calls/{uuid.uuid4()}/agora-token")
    assert wrong_method.status == 405 and wrong_method.problem == "method-not-allowed"
    assert "POST" in wrong_method.headers["Allow"]
    call = await new_call(db)
    big = await server.token(call.id, caller_jwt(auth, call), data=b"x" * 4096)
    assert big.status == 413 and big.problem == "payload-too-large"
    empty_json = await server.token(call.id, caller_jwt(auth, call), json={})
    assert empty_json.status == 200


async def test_request_id_is_echoed_or_generated(server: Running) -> None:
    given = await server.request("GET", "/healthz", headers={"X-Request-Id": "abc-123"})
    assert given.headers["X-Request-Id"] == "abc-123"
    bad = await server.request("GET", "/healthz", headers={"X-Request-Id": "<script>"})
    assert bad.headers["X-Request-Id"] != "<script>" and len(bad.headers["X-Request-Id"]) == 32
    problem = await server.token(uuid.uuid4(), headers={"X-Request-Id": "req-9"})
    assert problem.body["request_id"] == "req-9"


async def test_cors_allow_list(
    auth: FakeSupabaseAuth, pool: asyncpg.Pool, migrated_dsn: str, server: Running,
    db: asyncpg.Connection,
) -> None:  # fmt: skip
    call = await new_call(db)
    path = f"/v1/calls/{call.id}/agora-token"
    # Default: no CORS at all, never a wildcard.
    reply = await server.token(call.id, caller_jwt(auth, call),
                               headers={"Origin": "https://app.example"})  # fmt: skip
    assert reply.status == 200 and "Access-Control-Allow-Origin" not in reply.headers
    settings = make_settings(auth, migrated_dsn, cors_allow_origins=("https://app.example",))
    async with running(settings, pool) as srv:
        preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization"}  # fmt: skip
        ok = await srv.request("OPTIONS", path, headers=preflight)
        assert ok.status == 204
        assert ok.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "Authorization" in ok.headers["Access-Control-Allow-Headers"]
        assert ok.headers["Access-Control-Allow-Methods"] == "POST"
        evil = await srv.request("OPTIONS", path, headers=preflight | {"Origin": "https://evil"})
        assert evil.status == 403 and evil.problem == "origin-not-allowed"
        assert "Access-Control-Allow-Origin" not in evil.headers
        allowed = await srv.token(call.id, caller_jwt(auth, call),
                                  headers={"Origin": "https://app.example"})  # fmt: skip
        assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert allowed.headers["Vary"] == "Origin"
        other = await srv.token(call.id, caller_jwt(auth, call), headers={"Origin": "https://x"})
        assert "Access-Control-Allow-Origin" not in other.headers


async def test_health_readiness_metrics(
    server: Running, auth: FakeSupabaseAuth, db: asyncpg.Connection
) -> None:
    health = await server.request("GET", "/healthz")
    assert (health.status, health.body) == (200, {"status": "ok"})
    ready = await server.request("GET", "/readyz")
    assert ready.status == 200
    assert ready.body == {"status": "ready", "ready": True, "checks": {"database": "ok"}}
    call = await new_call(db)
    await server.token(call.id, caller_jwt(auth, call))
    await server.token(call.id, "garbage")
    metrics = await server.request("GET", "/metrics")
    assert metrics.status == 200 and metrics.content_type == "text/plain"
    assert 'orchestrator_tokens_total{outcome="issued"}' in metrics.body
    assert 'orchestrator_tokens_total{outcome="unauthorized"}' in metrics.body
    assert "orchestrator_token_request_seconds_count" in metrics.body


def _check(schema: dict[str, Any], value: Any) -> None:
    """A small JSON Schema subset (type, required, properties, enum, const, pattern)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        _check(SPEC["components"]["schemas"][name], value)
        return
    kinds = {"object": dict, "string": str, "integer": int, "boolean": bool}
    if "type" in schema:
        assert isinstance(value, kinds[schema["type"]]), (schema, value)
    if "enum" in schema:
        assert value in schema["enum"], (schema["enum"], value)
    if "const" in schema:
        assert value == schema["const"]
    if "pattern" in schema:
        import re

        assert re.search(schema["pattern"], value)
    for name in schema.get("required", []):
        assert name in value, name
    props = schema.get("properties", {})
    if schema.get("additionalProperties") is False:
        assert set(value) <= set(props), set(value) - set(props)
    for name, sub in props.items():
        if isinstance(value, dict) and name in value:
            _check(sub, value[name])


async def test_openapi_describes_every_route_accurately(
    server: Running, auth: FakeSupabaseAuth, db: asyncpg.Connection
) -> None:
    doc = (await server.request("GET", "/openapi.json")).body
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, item in doc["paths"].items()
                  for method in item if method != "parameters"}  # fmt: skip
    served = {(route.resource.canonical, route.method) for route in server.app.router.routes()
              if route.resource is not None}  # fmt: skip
    assert documented == served
    call = await new_call(db)
    token_op = doc["paths"]["/v1/calls/{call_id}/agora-token"]["post"]
    issued = await server.token(call.id, caller_jwt(auth, call))
    _check(token_op["responses"]["200"]["content"]["application/json"]["schema"], issued.body)
    for status, reply in (
        ("401", await server.token(call.id)),
        ("404", await server.token(uuid.uuid4(), caller_jwt(auth, call))),
    ):
        assert reply.status == int(status)
        _check(token_op["responses"][status]["content"][PROBLEM_JSON]["schema"], reply.body)
    ready = await server.request("GET", "/readyz")
    _check(doc["paths"]["/readyz"]["get"]["responses"]["200"]["content"]["application/json"]
           ["schema"], ready.body)  # fmt: skip


# --- secrets and logs ----------------------------------------------------------------------


async def test_no_secret_in_logs_errors_or_audit(
    server: Running, auth: FakeSupabaseAuth, db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    call = await new_call(db)
    good = caller_jwt(auth, call)
    expired = caller_jwt(auth, call, exp=int(time.time()) - 300)
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        issued = await server.token(call.id, good, headers={"X-Request-Id": "log-1"})
        refused = await server.token(call.id, expired, headers={"X-Request-Id": "log-2"})
        outsider = await server.token(uuid.uuid4(), good, headers={"X-Request-Id": "log-3"})
    assert (issued.status, refused.status, outsider.status) == (200, 401, 404)
    secrets = [good, expired, issued.body["token"], APP_CERT, good.split(".")[2]]
    captured = json.dumps(events, default=str) + "\n".join(
        f"{r.getMessage()} {r.__dict__}" for r in caplog.records
    )
    for secret in secrets:
        assert secret not in captured
    assert "eyJ" not in captured and APP_CERT.lower() not in captured.lower()
    for reply in (refused, outsider):
        assert all(secret not in json.dumps(reply.body) for secret in secrets)
    lines = {e["request_id"]: e for e in events if e.get("event") == "request"}
    assert set(lines) == {"log-1", "log-2", "log-3"}
    line = lines["log-1"]
    assert line["user_id"] == str(call.caller) and line["call_id"] == str(call.id)
    assert line["outcome"] == "issued" and line["status"] == 200
    assert isinstance(line["latency_ms"], float)
    assert lines["log-2"]["outcome"] == "unauthorized" and lines["log-2"]["reason"] == "expired"
    assert lines["log-3"]["outcome"] == "not_found"
    detail = json.dumps([dict(r) for r in await audit_rows(db, call.id)], default=str)
    assert issued.body["token"] not in detail and "eyJ" not in detail


# --- start-up ------------------------------------------------------------------------------


async def test_configuration_is_validated_at_start(
    auth: FakeSupabaseAuth, pool: asyncpg.Pool, migrated_dsn: str
) -> None:
    base = make_settings(auth, migrated_dsn)
    for bad in (
        {"agora_app_id": None},
        {"agora_app_cert": None},
        {"agora_app_id": "xyz"},
        {"agora_app_cert": "0" * 31},
        {"supabase_url": None},
        {"supabase_jwt_secret": "too-short"},
        {"agora_token_version": "008"},
    ):
        with pytest.raises(ConfigError) as caught:
            build_app(base.with_overrides(**bad), pool, Metrics())
        assert APP_CERT not in str(caught.value)
    with structlog.testing.capture_logs() as events:
        build_app(base.with_overrides(token_ttl_seconds=600), pool, Metrics())
        build_app(base.with_overrides(token_ttl_seconds=300), pool, Metrics())
    warnings = [e for e in events if e["event"] == "token_ttl_outside_recommended_range"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"
    assert warnings[0]["token_ttl_seconds"] == 600
    assert APP_CERT not in json.dumps(events, default=str)


async def test_serve_runs_until_cancelled(auth: FakeSupabaseAuth, migrated_dsn: str) -> None:
    port = free_port()
    task = asyncio.create_task(serve(make_settings(auth, migrated_dsn, port=port)))
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    assert not task.done(), task.exception()
                    return False

            await wait_for(ready, timeout=10, interval=0.05)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not port_open("127.0.0.1", port)
