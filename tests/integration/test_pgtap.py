"""The pgTAP database tests (supabase/tests/) pass on a freshly migrated database.

The same files run on a user's own project with `supabase test db`; here they run with
`pg_prove` against a clone of the session's migrated template (Supabase emulation + every
migration), prepared the way a Supabase project is: pgTAP in the `extensions` schema, which is
on the search_path. Each file is one transaction that rolls back.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.support.services import require, require_binary

pytestmark = pytest.mark.postgres

TESTS = Path(__file__).resolve().parents[2] / "supabase" / "tests"
TEST_FILES = sorted(TESTS.rglob("*.sql"))


async def prepare(dsn: str) -> None:
    """pgTAP as a Supabase project has it (skip, or fail under CI, when it is not installed)."""
    conn = await asyncpg.connect(dsn)
    try:
        available = await conn.fetchval(
            "select exists (select 1 from pg_available_extensions where name = 'pgtap')"
        )
        require("pgtap", available, "the postgresql-15-pgtap package is not installed")
        database = await conn.fetchval("select current_database()")
        await conn.execute("create schema if not exists extensions")
        await conn.execute("grant usage on schema extensions to anon, authenticated, service_role")
        await conn.execute("create extension if not exists pgtap with schema extensions")
        await conn.execute(
            f'alter database "{database}" set search_path = "$user", public, extensions'
        )
    finally:
        await conn.close()


def pg_prove(dsn: str, files: list[Path]) -> subprocess.CompletedProcess[str]:
    binary = require_binary("pg_prove")
    url = urlsplit(dsn)
    env = os.environ | {"PGPASSWORD": url.password or ""}
    command = [binary, "--verbose", "--host", url.hostname or "127.0.0.1"]
    command += ["--port", str(url.port or 5432), "--username", url.username or "postgres"]
    command += ["--dbname", url.path.lstrip("/"), *map(str, files)]
    return subprocess.run(
        command, check=False, capture_output=True, text=True, env=env, timeout=300
    )


def test_the_test_files_are_there() -> None:
    names = {path.name for path in TEST_FILES}
    assert {"rls.test.sql", "rpc.test.sql", "transitions.test.sql"} <= names


async def test_pgtap_suite_passes(fresh_dsn: str) -> None:
    await prepare(fresh_dsn)
    result = pg_prove(fresh_dsn, TEST_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Result: PASS" in result.stdout


async def test_pg_prove_reports_a_failing_assertion(fresh_dsn: str, tmp_path: Path) -> None:
    """The harness can fail: one false assertion makes pg_prove (and so this file) fail."""
    await prepare(fresh_dsn)
    failing = tmp_path / "failing.test.sql"
    failing.write_text(
        "begin;\nselect plan(1);\n"
        "select ok(orchestrator.transition_allowed('callee', 'ended', 'ringing', null));\n"
        "select * from finish();\nrollback;\n"
    )
    result = pg_prove(fresh_dsn, [failing])
    assert result.returncode != 0
    assert "Result: FAIL" in result.stdout
