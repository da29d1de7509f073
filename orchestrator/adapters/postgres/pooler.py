"""Is DATABASE_URL a transaction-mode pooler (Supavisor :6543, PgBouncer pool_mode=transaction)?

A port number proves nothing (PgBouncer runs anywhere), so we ask the server side: two client
connections that are open at the same time are two sessions on a direct connection or a
session pooler, so they can never share a backend, and one client connection always keeps its
backend. Behind a transaction pooler a client gets whichever server connection is free for each
transaction; we pin a backend with an open transaction on one client and look at what the other
gets. One observation of a shared or changing backend is proof; a few rounds of alternation
without one rule out every pooler that hands out idle server connections LIFO or FIFO.
"""

from __future__ import annotations

import asyncio

import asyncpg

from orchestrator.config import ConfigError

ROUNDS = 3
PID = "select pg_backend_pid()"
# A pooler with one server connection makes the second client wait while the first holds a
# transaction; a session never waits for another one, so waiting this long is proof too.
WAIT_SECONDS = 3.0

# The two connection strings a Supabase project shows, for the refusal message.
ADVICE = (
    "use the direct connection (db.<project>.supabase.co:5432) or the session pooler "
    "(Supavisor session mode, port 5432) instead"
)


class TransactionPoolerError(ConfigError):
    """DATABASE_URL points at a transaction-mode pooler and this command needs a session."""


async def _connect(dsn: str) -> asyncpg.Connection:
    # No named prepared statements: they are what a transaction pooler breaks first.
    conn: asyncpg.Connection = await asyncpg.connect(dsn, statement_cache_size=0)
    return conn


async def behind_transaction_pooler(dsn: str) -> bool:
    """True when two probes prove that server sessions are shared between client connections.

    Connection errors propagate (the caller retries or reports them as it always has)."""
    a = await _connect(dsn)
    try:
        b = await _connect(dsn)
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                return await _rounds(a, b)
        except TimeoutError:
            return True
        finally:
            b.terminate()  # never wait on a connection the pooler may be holding back
    finally:
        a.terminate()


async def _rounds(a: asyncpg.Connection, b: asyncpg.Connection) -> bool:
    seen_a: set[int] = set()
    seen_b: set[int] = set()
    for _ in range(ROUNDS):
        seen_a.add(await a.fetchval(PID))  # released at once behind a pooler
        seen_b.add(await b.fetchval(PID))  # a LIFO pooler hands b the backend a just left
        async with a.transaction():  # pin a backend for a
            seen_a.add(await a.fetchval(PID))
            seen_b.add(await b.fetchval(PID))  # can only be another backend
        async with b.transaction():
            seen_b.add(await b.fetchval(PID))
            seen_a.add(await a.fetchval(PID))
        if len(seen_a) > 1 or len(seen_b) > 1 or seen_a & seen_b:
            return True
    return False


def refusal(command: str) -> str:
    return (
        f"`orchestrator {command}` cannot run through a transaction-mode pooler "
        "(Supavisor port 6543 or PgBouncer pool_mode=transaction): it needs a database session "
        f"of its own (LISTEN, advisory locks, session settings); {ADVICE}. "
        "Only `orchestrator serve` (the token server) works through a transaction pooler."
    )


async def refuse_transaction_pooler(dsn: str, command: str) -> None:
    """Raise TransactionPoolerError (a ConfigError: exit 2 with the message) behind one."""
    if await behind_transaction_pooler(dsn):
        raise TransactionPoolerError(refusal(command))
