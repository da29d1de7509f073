"""The kit's calls API (Node, real supabase-js) against the real database: supabase-js talks
HTTP to a PostgREST stand-in (tests/fakes/postgrest.py) that runs every request as the JWT's
user, so RLS, column grants, the state-machine triggers and the RPCs decide, and errors come
back with the database's own SQLSTATEs."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.fakes.jwks import claims, hs256
from tests.fakes.postgrest import FakePostgrest
from tests.support.db import create_user
from tests.support.node_kit import compile_kit, node_test

# One xdist worker runs every test of the kit: they share its node_modules and build/.
pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("node_kit")]

SECRET = "postgrest-stand-in-secret-with-32-chars-or-more"
NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "mallory")


@pytest.fixture
async def postgrest(migrated_dsn: str) -> AsyncIterator[FakePostgrest]:
    async with FakePostgrest(migrated_dsn, SECRET) as server:
        yield server


async def write_fixture(db: asyncpg.Connection, server: FakePostgrest, path: Path) -> Path:
    users: dict[str, Any] = {}
    for name in NAMES:
        user = await create_user(db, name=name.title())
        users[name] = {"id": str(user), "jwt": hs256(claims(server.url, user), SECRET)}
    fixture = {"url": server.url, "anonKey": "anon", "users": users, "newCallId": str(uuid.uuid4())}
    path.write_text(json.dumps(fixture))
    return path


async def test_calls_api_through_supabase_js(
    postgrest: FakePostgrest, db: asyncpg.Connection, tmp_path: Path
) -> None:
    build = compile_kit()
    fixture = await write_fixture(db, postgrest, tmp_path / "api.json")
    output = await node_test(
        build / "test" / "integration" / "calls.test.js",
        180,
        KIT_API=str(fixture),
        KIT_API_PART="api",
    )
    assert "pass 4" in output, output
    # It really went over HTTP: inserts, updates, reads and RPCs.
    methods = {(m, p.split("/")[3]) for m, p in postgrest.requests}
    assert {("POST", "calls"), ("PATCH", "calls"), ("GET", "calls"), ("POST", "rpc")} <= methods


async def test_heartbeat_through_supabase_js(
    postgrest: FakePostgrest, db: asyncpg.Connection, tmp_path: Path
) -> None:
    exists = await db.fetchval("select to_regprocedure('public.call_heartbeat(uuid)') is not null")
    if not exists:
        pytest.skip("call_heartbeat(uuid) is not in the database yet (presence migration)")
    build = compile_kit()
    fixture = await write_fixture(db, postgrest, tmp_path / "api.json")
    output = await node_test(
        build / "test" / "integration" / "calls.test.js",
        120,
        KIT_API=str(fixture),
        KIT_API_PART="heartbeat",
    )
    assert "pass 1" in output, output
