"""Token server abuse limits (issue 10): the callee gets no publisher token while the call
rings (so a modified app cannot watch the caller before answering), and a slow or malformed
client gets 408/400 — never 503, which would fake an outage alert. Real HTTP, real database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.tokenserver.app import Limits
from orchestrator.tokenserver.state import SERVER
from tests.fakes.jwks import FakeSupabaseAuth
from tests.integration.test_token_server import (
    Running,
    _no_reset,
    callee_jwt,
    caller_jwt,
    make_settings,
    new_call,
    running,
)
from tests.support.db import client_update


@pytest.fixture(scope="session")
async def auth() -> AsyncIterator[FakeSupabaseAuth]:
    async with FakeSupabaseAuth() as fake:
        yield fake


@pytest.fixture(scope="session")
async def pool(migrated_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(migrated_dsn, min_size=1, max_size=2, reset=_no_reset) as p:
        yield p


def unavailable_count(metrics_text: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "orchestrator_tokens_total" and sample.labels == {
                "outcome": "unavailable"
            }:
                return float(sample.value)
    return 0.0


async def test_a_ringing_callee_gets_409_call_not_accepted_and_the_caller_a_token(
    auth: FakeSupabaseAuth, pool: asyncpg.Pool, migrated_dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(auth, migrated_dsn, callee_token_while_ringing=False)
    async with running(settings, pool) as srv:
        call = await new_call(db)
        reply = await srv.token(call.id, callee_jwt(auth, call))
        assert reply.status == 409, reply.body
        assert reply.problem == "call-not-accepted"
        assert reply.content_type == "application/problem+json"
        assert (await srv.token(call.id, caller_jwt(auth, call))).status == 200
        issued = await db.fetch(
            "select actor from public.call_audit where call_id = $1 and event = 'token_issued'",
            call.id,
        )
        assert [r["actor"] for r in issued] == ["caller"]  # nothing issued to the callee
        await client_update(db, call.callee, call.id, "accepted")
        accepted = await srv.token(call.id, callee_jwt(auth, call))
        assert accepted.status == 200 and accepted.body["uid"] == 2


async def test_callee_token_while_ringing_restores_early_tokens(
    auth: FakeSupabaseAuth, pool: asyncpg.Pool, migrated_dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(auth, migrated_dsn, callee_token_while_ringing=True)
    async with running(settings, pool) as srv:
        call = await new_call(db)
        reply = await srv.token(call.id, callee_jwt(auth, call))
        assert reply.status == 200 and reply.body["uid"] == 2


async def raw_exchange(srv: Running, head: bytes, body: bytes, *, wait: float) -> bytes:
    """Send a request by hand (headers, part of a body), then stall; return the answer."""
    host, _, port = srv.url.removeprefix("http://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head + body)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), wait)
    finally:
        writer.close()


async def test_a_stalled_body_gets_408_and_never_counts_as_unavailable(
    auth: FakeSupabaseAuth, pool: asyncpg.Pool, migrated_dsn: str, db: asyncpg.Connection
) -> None:
    limits = Limits(body_timeout=0.3, request_timeout=5.0)
    async with running(make_settings(auth, migrated_dsn), pool, limits=limits) as srv:
        call = await new_call(db)
        before = unavailable_count(srv.app[SERVER].metrics.render().decode())
        head = (
            f"POST /v1/calls/{call.id}/agora-token HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {caller_jwt(auth, call)}\r\n"
            "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
        ).encode()
        answer = await raw_exchange(srv, head, b'{"partial":', wait=3.0)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"request-timeout" in answer
        malformed = (
            f"POST /v1/calls/{call.id}/agora-token HTTP/1.1\r\nHost: x\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        broken = await raw_exchange(srv, malformed, b"zz\r\nnot a chunk\r\n", wait=3.0)
        assert broken.split(b" ", 2)[1] == b"400", broken[:200]  # aiohttp's parser answers
        after = unavailable_count(srv.app[SERVER].metrics.render().decode())
        assert after == before
