"""Apply supabase/migrations/*.sql in order, recorded the way the Supabase CLI records them."""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from orchestrator.config import Settings
from orchestrator.logs import get_logger

log = get_logger(__name__)
FILENAME = re.compile(r"^(\d{14})_([a-z0-9_]+)\.sql$")
EMULATION_SQL = Path(__file__).with_name("emulation.sql")
# Serialises concurrent `migrate` runs (a release phase and a worker start, say).
MIGRATE_LOCK = 7338
LOCK_TIMEOUT = "5s"
LOCK_ATTEMPTS = 8


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def migrations_dir() -> Path:
    """The migrations folder: $ORCHESTRATOR_MIGRATIONS_DIR, else the source tree's."""
    override = os.environ.get("ORCHESTRATOR_MIGRATIONS_DIR")
    candidates = [Path(override)] if override else []
    candidates += [
        Path(__file__).resolve().parents[3] / "supabase" / "migrations",
        Path.cwd() / "supabase" / "migrations",
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("supabase/migrations not found; set ORCHESTRATOR_MIGRATIONS_DIR")


def discover(folder: Path | None = None) -> list[Migration]:
    found = []
    for path in sorted((folder or migrations_dir()).glob("*.sql")):
        match = FILENAME.match(path.name)
        if not match:
            raise ValueError(f"{path.name}: migration files are named <yyyymmddhhmmss>_<name>.sql")
        found.append(Migration(match.group(1), match.group(2), path))
    return found


async def emulate_supabase(conn: asyncpg.Connection) -> None:
    """Create Supabase's roles, `auth` schema and publication on a plain PostgreSQL."""
    await conn.execute(EMULATION_SQL.read_text(encoding="utf-8"))


async def applied_versions(conn: asyncpg.Connection) -> set[str]:
    exists = await conn.fetchval("select to_regclass('supabase_migrations.schema_migrations')")
    if exists is None:
        return set()
    rows = await conn.fetch("select version from supabase_migrations.schema_migrations")
    return {row["version"] for row in rows}


async def migrate(
    conn: asyncpg.Connection, *, folder: Path | None = None, upto: str | None = None
) -> list[str]:
    """Apply every migration not yet recorded (each in its own transaction); returns them."""
    await conn.execute("select pg_advisory_lock($1)", MIGRATE_LOCK)
    try:
        await conn.execute(
            """
            create schema if not exists supabase_migrations;
            create table if not exists supabase_migrations.schema_migrations (
              version text primary key, statements text[], name text
            );
            """
        )
        done = await applied_versions(conn)
        applied = []
        for migration in discover(folder):
            if migration.version in done or (upto is not None and migration.version > upto):
                continue
            await _apply_one(conn, migration)
            log.info("migration_applied", version=migration.version, name=migration.name)
            applied.append(migration.version)
        return applied
    finally:
        await conn.execute("select pg_advisory_unlock($1)", MIGRATE_LOCK)


async def _apply_one(conn: asyncpg.Connection, migration: Migration) -> None:
    """One migration in one transaction. Under running workers its DDL must not queue behind
    (and block) their traffic for long, nor win a deadlock forever: wait at most
    LOCK_TIMEOUT for each lock, and on a lock conflict roll back and try again."""
    delay = 0.2
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            async with conn.transaction():
                await conn.execute(f"set local lock_timeout = '{LOCK_TIMEOUT}'")
                await conn.execute(migration.sql)
                await conn.execute(
                    "insert into supabase_migrations.schema_migrations (version, statements, name)"
                    " values ($1, $2, $3)",
                    migration.version,
                    [migration.sql],
                    migration.name,
                )
            return
        except (asyncpg.DeadlockDetectedError, asyncpg.LockNotAvailableError) as exc:
            if attempt == LOCK_ATTEMPTS:
                raise
            log.warning(
                "migration_retry",
                version=migration.version,
                attempt=attempt,
                error=type(exc).__name__,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5)


async def apply_runtime_settings(
    conn: asyncpg.Connection,
    *,
    ring_timeout: int | None,
    max_call_seconds: int | None,
    calls_per_minute: int | None,
    max_devices: int | None = None,
) -> None:
    """Overwrite the database's timers/limits with the variables that are explicitly set."""
    await conn.execute(
        """
        update orchestrator.settings set
          ring_timeout_seconds = coalesce($1, ring_timeout_seconds),
          max_call_seconds = coalesce($2, max_call_seconds),
          calls_per_minute_per_caller = coalesce($3, calls_per_minute_per_caller),
          max_devices_per_user = coalesce($4, max_devices_per_user)
        """,
        ring_timeout,
        max_call_seconds,
        calls_per_minute,
        max_devices,
    )


async def apply_settings_from_env(conn: asyncpg.Connection, settings: Settings) -> None:
    """`apply_runtime_settings` with the variables the environment explicitly sets."""
    await apply_runtime_settings(
        conn,
        ring_timeout=settings.ring_timeout if settings.ring_timeout_set else None,
        max_call_seconds=settings.max_call_seconds if settings.max_call_seconds_set else None,
        calls_per_minute=settings.calls_per_minute_per_caller
        if settings.calls_per_minute_set
        else None,
        max_devices=settings.max_devices_per_user if settings.max_devices_set else None,
    )
    await apply_presence_settings(
        conn,
        source=settings.presence_source if settings.presence_source_set else None,
        timeout=settings.presence_timeout if settings.presence_timeout_set else None,
    )


async def apply_presence_settings(
    conn: asyncpg.Connection, *, source: str | None, timeout: int | None
) -> None:
    """PRESENCE_SOURCE / PRESENCE_TIMEOUT_SECONDS into the database (only those explicitly set).

    A change re-times every accepted call, so turning presence on covers calls already running.
    """
    if source is None and timeout is None:
        return
    async with conn.transaction():
        changed = await conn.fetchval(
            """
            with old as (select source, timeout_seconds from orchestrator.presence_settings)
            update orchestrator.presence_settings s set
              source = coalesce($1, s.source), timeout_seconds = coalesce($2, s.timeout_seconds)
            from old
            returning (old.source, old.timeout_seconds)
              is distinct from (s.source, s.timeout_seconds)
            """,
            source,
            timeout,
        )
        if changed:
            await conn.execute(
                "select orchestrator.presence_reschedule(c.id) from public.calls c"
                " where c.status = 'accepted'"
            )
