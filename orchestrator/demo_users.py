"""The demo's database preparation and its users, on a local database or a real Supabase one.

A database that already has an `auth` schema (a Supabase project, a local Supabase stack) is
used as it is: the emulation is skipped (the platform owns `auth`; `postgres` may not create
anything there). Demo users are created the way GoTrue's schema allows (it has no default for
`auth.users.id`: we choose the id; `aud`/`role`/`instance_id` are set where those columns
exist) and removed afterwards, with their calls, audit rows and deliveries. A database where
the demo may not create users is refused with a message saying what to do instead.
"""

from __future__ import annotations

import json
import uuid

import asyncpg

from orchestrator.adapters.postgres import demo_sql as sql
from orchestrator.adapters.postgres.migrate import emulate_supabase
from orchestrator.config import ConfigError

DEMO_DOMAIN = "demo.test"
# GoTrue's columns we fill when the table has them (a real project's users look alike then).
GOTRUE_DEFAULTS = {
    "instance_id": "00000000-0000-0000-0000-000000000000",
    "aud": "authenticated",
    "role": "authenticated",
}


async def has_auth_schema(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval(sql.HAS_AUTH_USERS))


async def prepare(conn: asyncpg.Connection) -> bool:
    """Emulate Supabase only where it is missing; True when the database was Supabase's."""
    if await has_auth_schema(conn):
        return True
    await emulate_supabase(conn)
    return False


async def _columns(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(sql.AUTH_USER_COLUMNS)
    return {row["column_name"] for row in rows}


async def create_user(conn: asyncpg.Connection, name: str) -> uuid.UUID:
    """One demo user; the id is ours (GoTrue's auth.users.id has no default)."""
    columns = await _columns(conn)
    user_id = uuid.uuid4()
    values: dict[str, object] = {
        "id": user_id,
        "email": f"{name}-{user_id.hex[:6]}@{DEMO_DOMAIN}",
        "raw_user_meta_data": json.dumps({"full_name": name.capitalize(), "demo": True}),
    }
    values.update({k: v for k, v in GOTRUE_DEFAULTS.items() if k in columns})
    if "raw_app_meta_data" in columns:
        values["raw_app_meta_data"] = json.dumps({"provider": "email", "providers": ["email"]})
    names, placeholders, args = [], [], []
    for column, value in values.items():
        args.append(value)
        names.append(column)
        placeholders.append(f"${len(args)}::{_type(column)}")
    for stamp in ("created_at", "updated_at"):
        if stamp in columns:
            names.append(stamp)
            placeholders.append("now()")
    try:
        await conn.execute(sql.insert_auth_user(names, placeholders), *args)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise ConfigError(
            f"demo: this database does not let the demo create users in auth.users ({exc}). "
            "Run `orchestrator demo` without DATABASE_URL (it starts its own local database), "
            "or on a local Supabase stack, or connect as a role that may write auth.users "
            "(`postgres` on a Supabase project)."
        ) from None
    return user_id


def _type(column: str) -> str:
    if column in ("id", "instance_id"):
        return "uuid"
    if column.startswith("raw_"):
        return "jsonb"
    return "text"


async def remove(conn: asyncpg.Connection, users: list[uuid.UUID]) -> int:
    """Delete the demo's users and everything their calls left behind; returns users removed."""
    async with conn.transaction():
        # The audit is append-only except for pruning ended calls (as `orchestrator prune`).
        await conn.execute(sql.PRUNE_ON)
        calls = [
            r["id"]
            for r in await conn.fetch(
                sql.CALLS_OF_USERS,
                users,
            )
        ]
        await conn.execute(sql.DELETE_AUDIT_OF, calls)
        await conn.execute(sql.DELETE_DELIVERIES_OF, calls)
        await conn.execute(sql.DELETE_CALLS, calls)
        status: str = await conn.execute(
            sql.DELETE_DEMO_USERS,
            users,
            DEMO_DOMAIN,
        )
    return int(status.rsplit(maxsplit=1)[-1])
