"""The asyncpg pool every process uses."""

from __future__ import annotations

import asyncpg


async def _no_reset(_: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query (30–50 % of a short transaction's cost).

    Safe because pooled connections keep no session state: every setting the store makes is
    transaction-local (set_config(..., true)) and LISTEN runs on its own connection.
    """


async def create_pool(
    dsn: str,
    *,
    size: int = 8,
    name: str = "orchestrator",
    min_size: int = 1,
    command_timeout: float | None = 30,
    statement_cache_size: int = 100,
) -> asyncpg.Pool:
    """`statement_cache_size=0` (the token server): only unnamed prepared statements, which a
    transaction-mode pooler can run, because each lives and dies within one request's Bind."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=size,
        reset=_no_reset,
        command_timeout=command_timeout,
        statement_cache_size=statement_cache_size,
        server_settings={"application_name": name},
    )
    return pool
