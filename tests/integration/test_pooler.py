"""Behind a real PgBouncer in transaction mode every command works or refuses with the message.

The token server works (60 concurrent requests, never a 500); the worker, `migrate` (twice),
`call show` and `demo` refuse at start, naming the transaction pooler and the connection string
to use, and the worker never reports ready meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from orchestrator.adapters.postgres.pooler import (
    TransactionPoolerError,
    behind_transaction_pooler,
)
from orchestrator.tokenserver.app import web_pool
from orchestrator.worker import WorkerHooks, run_worker
from tests.fakes.jwks import FakeSupabaseAuth
from tests.integration.test_token_server import caller_jwt, make_settings, new_call, running
from tests.support.pgbouncer import PgBouncer, pgbouncer
from tests.support.worker import worker_settings

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def bouncer(migrated_dsn: str) -> AsyncIterator[PgBouncer]:
    async with pgbouncer(migrated_dsn) as running_bouncer:
        yield running_bouncer


@pytest.fixture(scope="module")
async def auth() -> AsyncIterator[FakeSupabaseAuth]:
    async with FakeSupabaseAuth() as fake:
        yield fake


def assert_refusal(text: str) -> None:
    assert "transaction-mode pooler" in text, text
    assert "port 6543" in text and "session pooler" in text and "5432" in text, text


async def test_detection_tells_the_pooler_from_a_direct_connection(
    migrated_dsn: str, bouncer: PgBouncer
) -> None:
    assert await behind_transaction_pooler(migrated_dsn) is False
    assert await behind_transaction_pooler(bouncer.dsn(migrated_dsn)) is True


async def test_detection_accepts_a_session_pooler(migrated_dsn: str) -> None:
    async with pgbouncer(migrated_dsn, pool_mode="session") as session_bouncer:
        assert await behind_transaction_pooler(session_bouncer.dsn(migrated_dsn)) is False


async def test_token_burst_through_the_pooler_never_500(
    migrated_dsn: str, bouncer: PgBouncer, db: asyncpg.Connection, auth: FakeSupabaseAuth
) -> None:
    dsn = bouncer.dsn(migrated_dsn)
    settings = make_settings(auth, dsn, db_pool_size=10)
    calls = [await new_call(db) for _ in range(6)]
    pool = await web_pool(settings)  # exactly the pool `orchestrator serve` uses
    try:
        async with running(settings, pool) as srv:
            replies = await asyncio.gather(
                *(srv.token(calls[i % 6].id, caller_jwt(auth, calls[i % 6])) for i in range(60))
            )
    finally:
        await pool.close()
    statuses = Counter(r.status for r in replies)
    assert statuses == Counter({200: 60}), statuses
    issued = await db.fetchval(
        "select count(*) from public.call_audit where event = 'token_issued'"
        " and call_id = any($1::uuid[])",
        [c.id for c in calls],
    )
    assert issued == 60


async def test_worker_refuses_and_is_never_ready(migrated_dsn: str, bouncer: PgBouncer) -> None:
    hooks = WorkerHooks(providers={})
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_worker(worker_settings(bouncer.dsn(migrated_dsn)), stop, hooks=hooks)
    )
    ready_seen: list[int] = []

    async def probe() -> None:
        async with aiohttp.ClientSession() as http:
            while not task.done():
                if hooks.metrics_port:
                    url = f"http://127.0.0.1:{hooks.metrics_port}/readyz"
                    try:
                        async with http.get(url) as response:
                            ready_seen.append(response.status)
                    except aiohttp.ClientError:
                        pass
                await asyncio.sleep(0.02)

    prober = asyncio.create_task(probe())
    with pytest.raises(TransactionPoolerError) as raised:
        await asyncio.wait_for(task, 20)
    await prober
    assert_refusal(str(raised.value))
    assert 200 not in ready_seen


def cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": dsn, "LOG_FORMAT": "json"}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=ROOT,
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_session_commands_refuse_with_the_message(fresh_dsn: str) -> None:
    async with pgbouncer(fresh_dsn) as fresh_bouncer:
        dsn = fresh_bouncer.dsn(fresh_dsn)
        for args in (
            ("migrate",),
            ("migrate",),  # the second run fails the same clean way, not with a 42P05
            ("call", "show", "00000000-0000-0000-0000-000000000000"),
            ("prune", "--older-than", "30"),
            ("demo",),
        ):
            done = await asyncio.to_thread(cli, dsn, *args)
            assert done.returncode == 2, (args, done.stdout, done.stderr)
            assert_refusal(done.stderr)
            assert "PreparedStatement" not in done.stderr
