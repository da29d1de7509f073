"""`orchestrator demo` with DATABASE_URL on a Supabase-shaped database: the emulation is skipped
(the platform owns `auth`), demo users are created as GoTrue's schema allows and removed again,
or the demo refuses clearly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from orchestrator.adapters.postgres.migrate import emulate_supabase
from orchestrator.config import ConfigError, Settings
from orchestrator.demo import run_demo
from tests.support.supabase_shape import SupabaseShaped, supabase_shaped

pytestmark = pytest.mark.postgres


@pytest.fixture
async def supa(pg_server_dsn: str) -> AsyncIterator[SupabaseShaped]:
    if not pg_server_dsn.startswith("postgresql://") or "@/" in pg_server_dsn:
        pytest.skip("needs a TCP PostgreSQL server with trust authentication")
    async with supabase_shaped(pg_server_dsn) as shaped:
        yield shaped


async def _count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def test_the_shape_is_real_the_emulation_cannot_run_there(supa: SupabaseShaped) -> None:
    conn = await asyncpg.connect(supa.dsn)
    try:
        assert not await conn.fetchval("select rolsuper from pg_roles where rolname = current_user")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await emulate_supabase(conn)  # what `demo` used to do: permission denied
        with pytest.raises(asyncpg.NotNullViolationError):
            await conn.execute("insert into auth.users (email) values ('x@example.test')")
    finally:
        await conn.close()


async def test_demo_runs_and_leaves_no_demo_users(supa: SupabaseShaped) -> None:
    code = await run_demo(Settings.from_env({"DATABASE_URL": supa.dsn, "LOG_LEVEL": "error"}))
    assert code == 0
    assert await _count(supa.admin_dsn, "select count(*) from auth.users") == 0
    assert await _count(supa.admin_dsn, "select count(*) from public.calls") == 0
    assert await _count(supa.admin_dsn, "select count(*) from public.call_audit") == 0
    # The platform's auth schema was left alone: still only GoTrue's objects, still theirs.
    owners = await _count(
        supa.admin_dsn,
        "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'auth' and pg_get_userbyid(c.relowner) <> 'supabase_auth_admin'",
    )
    assert owners == 0


async def test_demo_refuses_clearly_where_it_may_not_create_users(supa: SupabaseShaped) -> None:
    admin = await asyncpg.connect(supa.admin_dsn)
    try:
        await admin.execute(f"revoke insert on auth.users from {supa.owner}")
    finally:
        await admin.close()
    with pytest.raises(ConfigError, match="without DATABASE_URL"):
        await run_demo(Settings.from_env({"DATABASE_URL": supa.dsn, "LOG_LEVEL": "error"}))
    assert await _count(supa.admin_dsn, "select count(*) from auth.users") == 0
