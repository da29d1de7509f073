"""The kit's watchCall (Node, real supabase-js Realtime client) against the fake Supabase
Realtime server (Phoenix protocol over a real websocket) fed from the real calls table, with
its re-reads and the calls' writes going to the PostgREST stand-in over the real database."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from tests.fakes.jwks import claims, hs256
from tests.fakes.postgrest import FakePostgrest
from tests.fakes.realtime_server import FakeRealtimeServer
from tests.support.db import create_user
from tests.support.node_kit import compile_kit, node_test

# One xdist worker runs every test of the kit: they share its node_modules and build/.
pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("node_kit")]

SECRET = "postgrest-stand-in-secret-with-32-chars-or-more"
ANON = "anon-key-for-the-kit"


class UserRealtime(FakeRealtimeServer):
    """Joins carry the user's JWT (supabase-js `accessToken`); the REST side verifies it."""

    async def _join(self, conn: Any, topic: str, ref: str | None, payload: Any) -> None:
        await super()._join(conn, topic, ref, {**payload, "access_token": None})


@pytest.fixture
async def realtime() -> AsyncIterator[FakeRealtimeServer]:
    async with UserRealtime(apikey=ANON) as server:
        yield server


@pytest.fixture
async def faults(realtime: FakeRealtimeServer) -> AsyncIterator[str]:
    """Lets the Node test trigger Realtime faults at the moment it needs them."""

    async def lose_next_event(_: web.Request) -> web.Response:
        realtime.drop_events += 1  # over quota: the change is skipped, nothing replays it
        return web.json_response({"ok": True})

    async def cut(_: web.Request) -> web.Response:
        await realtime.drop_connections(1006)  # the socket dies; supabase-js reconnects
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/lose-next-event", lose_next_event)
    app.router.add_post("/cut", cut)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_watch_call_reconciles_and_follows_events(
    realtime: FakeRealtimeServer,
    faults: str,
    migrated_dsn: str,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    build = compile_kit()
    async with (
        FakePostgrest(migrated_dsn, SECRET) as rest,
        realtime.feed_from_postgres(migrated_dsn),
    ):
        users: dict[str, Any] = {}
        for name in ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"):
            user = await create_user(db)
            users[name] = {"id": str(user), "jwt": hs256(claims(rest.url, user), SECRET)}
        fixture = tmp_path / "watch.json"
        fixture.write_text(
            json.dumps(
                {
                    "realtimeUrl": realtime.url,
                    "restUrl": rest.url,
                    "faultsUrl": faults,
                    "anonKey": ANON,
                    "users": users,
                }
            )
        )
        output = await node_test(
            build / "test" / "integration" / "watch.test.js", 120, KIT_WATCH=str(fixture)
        )
    assert "pass 3" in output, output
    assert realtime.subscribed >= 4 and realtime.changes_delivered >= 1
    assert realtime.changes_dropped >= 1
