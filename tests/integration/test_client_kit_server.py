"""The kit's fetchAgoraToken and renewal helper (Node) against a real `orchestrator serve`
process: real HTTP, ES256 JWTs from the fake Supabase Auth's JWKS, the real database, and a
short TOKEN_TTL_SECONDS so the renewal can be seen landing before the old privileges expire.
The tokens the Node side received are decoded here with our independent Agora decoder."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.fakes.agora_decoder import decode_007
from tests.fakes.jwks import FakeSupabaseAuth
from tests.support.db import client_update, create_session, create_user, insert_call
from tests.support.node_kit import compile_kit, node_test
from tests.support.services import free_port
from tests.support.wait import wait_for

# One xdist worker runs every test of the kit: they share its node_modules and build/.
pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("node_kit")]

APP_ID = "970CA35de60c44645bbae8a215061b33"
APP_CERT = "5CFd2fd1755d40ecb72977518be15d3b"
TTL = 60  # the smallest TOKEN_TTL_SECONDS the server accepts


@pytest.fixture
async def auth() -> AsyncIterator[FakeSupabaseAuth]:
    async with FakeSupabaseAuth() as fake:
        yield fake


@pytest.fixture
async def token_server(
    auth: FakeSupabaseAuth, migrated_dsn: str, tmp_path: Path
) -> AsyncIterator[str]:
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": migrated_dsn,
        "SUPABASE_URL": auth.url,
        "AGORA_APP_ID": APP_ID,
        "AGORA_APP_CERT": APP_CERT,
        "TOKEN_TTL_SECONDS": str(TTL),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "RATE_LIMIT_PER_USER": "1000/minute",
        "RATE_LIMIT_PER_IP": "10000/minute",
        "LOG_FORMAT": "json",
    }
    log = (tmp_path / "serve.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orchestrator", "serve", env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                assert proc.returncode is None, (tmp_path / "serve.log").read_text()
                try:
                    async with http.get(f"{url}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await wait_for(ready, timeout=30, interval=0.1)
        yield url
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)
        log.close()


async def participant(
    db: asyncpg.Connection, auth: FakeSupabaseAuth, user: uuid.UUID, call_id: uuid.UUID
) -> dict[str, str]:
    session = await create_session(db, user)
    return {"callId": str(call_id), "jwt": auth.key.sign(auth.claims(user, session))}


async def scenario(db: asyncpg.Connection, auth: FakeSupabaseAuth) -> dict[str, Any]:
    users = [await create_user(db) for _ in range(7)]
    ringing = await insert_call(db, users[0], users[1])
    accepted = await insert_call(db, users[2], users[3])
    await client_update(db, users[3], accepted, "accepted")
    ended = await insert_call(db, users[4], users[5])
    await client_update(db, users[4], ended, "ended", "cancelled")
    return {
        "ringingCaller": await participant(db, auth, users[0], ringing),
        "acceptedCallee": await participant(db, auth, users[3], accepted),
        "endedCaller": await participant(db, auth, users[4], ended),
        "stranger": await participant(db, auth, users[6], ringing),
    }


async def test_fetch_and_renew_against_orchestrator_serve(
    token_server: str, auth: FakeSupabaseAuth, db: asyncpg.Connection, tmp_path: Path
) -> None:
    build = compile_kit()
    out = tmp_path / "received.json"
    fixture = {
        "baseUrl": token_server,
        "appId": APP_ID,
        "ttlSeconds": TTL,
        "outPath": str(out),
        **await scenario(db, auth),
    }
    (tmp_path / "server.json").write_text(json.dumps(fixture))
    # Asynchronously: the fake Auth (JWKS) answers from this event loop meanwhile.
    await node_test(
        build / "test" / "integration" / "token.test.js",
        120,
        KIT_SERVER=str(tmp_path / "server.json"),
    )

    received = json.loads(out.read_text())
    # The renewal through the fallback timer: decoded independently of the server's builder.
    old, new = decode_007(received["timer"]["old"]), decode_007(received["timer"]["new"])
    for token in (old, new):
        assert token.signature_valid(APP_CERT)
        assert token.expire == TTL
        assert set(token.services[1].privileges.values()) == {TTL}  # privilege = token expiry
    old_privilege_expiry = old.issue_ts + TTL
    assert received["timer"]["renewedAtMs"] / 1000 < old_privilege_expiry
    assert new.issue_ts + TTL > old_privilege_expiry  # the new privileges outlive the old
    assert new.services[1].channel == old.services[1].channel == fixture["ringingCaller"]["callId"]
    event_new = decode_007(received["event"]["new"])
    assert event_new.signature_valid(APP_CERT) and event_new.services[1].uid == "1"
