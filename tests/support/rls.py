"""Acting as each kind of database actor, and recording what the database answered.

`acting` puts the connection in the shoes of an actor for one transaction: a client through
`tests.support.db.as_user` (exactly what PostgREST does), `service_role` the same way, the
*system* as the owner connection itself, and an *operator* as the owner with the
`orchestrator.operator` setting on. `attempt` runs one statement that way inside a transaction
that is always rolled back, and returns the SQLSTATE or the number of rows, so a test can try
a write without changing anything.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from tests.support.db import as_user

CLIENT_ROLES = ("anon", "authenticated", "service_role")


@dataclass(frozen=True)
class Who:
    """An actor: `role` is anon / authenticated / service_role / owner / operator."""

    role: str
    user_id: uuid.UUID | None = None
    operator: str = "tester"

    def __post_init__(self) -> None:
        if self.role not in (*CLIENT_ROLES, "owner", "operator"):
            raise ValueError(f"unknown role {self.role!r}")


ANON = Who("anon")
SERVICE_ROLE = Who("service_role")
OWNER = Who("owner")
OPERATOR = Who("operator")


def user(user_id: uuid.UUID) -> Who:
    return Who("authenticated", user_id)


@asynccontextmanager
async def acting(conn: asyncpg.Connection, who: Who) -> AsyncIterator[asyncpg.Connection]:
    """One transaction (a savepoint when nested) in which `conn` acts as `who`."""
    if who.role in CLIENT_ROLES:
        async with as_user(conn, who.user_id, role=who.role):
            yield conn
        return
    async with conn.transaction():
        if who.role == "operator":
            await conn.execute("select set_config('orchestrator.operator', $1, true)", who.operator)
        yield conn


@asynccontextmanager
async def rolled_back(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """A transaction that is always rolled back, whatever happens inside it."""
    tx = conn.transaction()
    await tx.start()
    try:
        yield conn
    finally:
        await tx.rollback()


@dataclass(frozen=True)
class Outcome:
    """What the database answered: an error's SQLSTATE, or the rows affected/returned."""

    sqlstate: str | None
    rows: int | None = None
    message: str = ""
    value: Any = None

    @property
    def ok(self) -> bool:
        return self.sqlstate is None


_TAG_COUNT = re.compile(r"(\d+)$")


def _tag_rows(tag: str) -> int | None:
    match = _TAG_COUNT.search(tag)
    return int(match.group(1)) if match else None


async def attempt(
    conn: asyncpg.Connection, who: Who, sql: str, *args: Any, value: bool = False
) -> Outcome:
    """Run `sql` as `who` in a transaction that is rolled back; never raises a database error.

    With `value=True` the first column of the first row is returned in `Outcome.value`
    (for RPCs); otherwise `rows` is the count from the command tag (rows selected, inserted,
    updated or deleted).
    """
    try:
        async with rolled_back(conn), acting(conn, who):
            if value:
                result = await conn.fetchval(sql, *args)
                return Outcome(None, rows=1, value=result)
            tag = await conn.execute(sql, *args)
            return Outcome(None, rows=_tag_rows(tag))
    except asyncpg.PostgresError as exc:
        return Outcome(exc.sqlstate, message=str(exc))


async def commit_as(conn: asyncpg.Connection, who: Who, sql: str, *args: Any) -> Any:
    """Run `sql` as `who` and commit; returns the first column of the first row (or None)."""
    async with acting(conn, who):
        return await conn.fetchval(sql, *args)
