"""Shared fixtures: a real PostgreSQL with the Supabase emulation and every migration applied."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import structlog

from orchestrator.adapters.postgres.migrate import emulate_supabase, migrate
from tests.support.services import UNAVAILABLE, in_ci, port_open, require

_EMBEDDED: Any = None

# In-process workers log through structlog's defaults (only the CLI runs logs.configure). Those
# render an exception with rich, frame locals included: ~0.1-0.5 s of CPU each, on the event loop
# the worker and the fakes share. A database outage logs dozens, so the loop stalled for seconds
# and pushes timed out (seen: a ring resent after a 7.5 s "uncertain" in the outage test). Plain
# tracebacks, as production logs them (logs.configure: format_exc_info, no locals).
structlog.configure(
    processors=[
        *structlog.get_config()["processors"][:-1],
        structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
    ]
)


def _server_dsn() -> str | None:
    """TEST_DATABASE_URL, else the machine's PostgreSQL, else an embedded one (pgserver)."""
    global _EMBEDDED
    if os.environ.get("TEST_DATABASE_URL"):
        return os.environ["TEST_DATABASE_URL"]
    if port_open("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        import pgserver

        _EMBEDDED = pgserver.get_server(".pgdata/tests", cleanup_mode="stop")
        return str(_EMBEDDED.get_uri())
    except Exception as exc:  # pragma: no cover - depends on the machine
        UNAVAILABLE["postgresql"] = f"no server on 127.0.0.1:5432 and pgserver failed: {exc}"
        return None


def with_database(dsn: str, name: str) -> str:
    base, _, query = dsn.partition("?")
    head = base.rsplit("/", 1)[0]
    return f"{head}/{name}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def pg_server_dsn() -> str:
    dsn = _server_dsn()
    require("postgresql", dsn is not None, UNAVAILABLE.get("postgresql", "no server"))
    assert dsn is not None
    return dsn


@pytest.fixture(scope="session")
async def template_db(pg_server_dsn: str) -> AsyncIterator[str]:
    """One migrated database per test session, used as a template for the others."""
    name = f"orch_tpl_{os.getpid()}"
    admin = await asyncpg.connect(pg_server_dsn)
    await admin.execute(f"drop database if exists {name}")
    await admin.execute(f"create database {name}")
    conn = await asyncpg.connect(with_database(pg_server_dsn, name))
    try:
        await emulate_supabase(conn)
        await migrate(conn)
    finally:
        await conn.close()
    yield name
    await admin.execute(f"drop database if exists {name} with (force)")
    await admin.close()


async def _clone(pg_server_dsn: str, template: str, name: str) -> str:
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f"create database {name} template {template}")
    finally:
        await admin.close()
    return with_database(pg_server_dsn, name)


async def _drop(pg_server_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f"drop database if exists {name} with (force)")
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def migrated_dsn(pg_server_dsn: str, template_db: str) -> AsyncIterator[str]:
    """A migrated database shared by the whole session (tests use their own fresh users)."""
    name = f"orch_shared_{os.getpid()}"
    dsn = await _clone(pg_server_dsn, template_db, name)
    yield dsn
    await _drop(pg_server_dsn, name)


@pytest.fixture
async def fresh_dsn(pg_server_dsn: str, template_db: str) -> AsyncIterator[str]:
    """A migrated database of its own, for tests that run workers or count globally."""
    name = f"orch_t_{uuid.uuid4().hex[:12]}"
    dsn = await _clone(pg_server_dsn, template_db, name)
    yield dsn
    await _drop(pg_server_dsn, name)


@pytest.fixture
async def db(migrated_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(migrated_dsn)
    yield conn
    await conn.close()


@pytest.fixture(scope="session", autouse=True)
def _stop_embedded() -> Iterator[None]:
    yield
    if _EMBEDDED is not None:  # pragma: no cover
        _EMBEDDED.cleanup()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if UNAVAILABLE:
        terminalreporter.section("services unavailable (tests skipped)")
        for service, why in sorted(UNAVAILABLE.items()):
            terminalreporter.write_line(f"{service}: {why}")
    elif not in_ci():
        terminalreporter.write_line("all services available")
