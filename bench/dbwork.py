"""What the database did for one scenario's database: server CPU, transactions, statements and
rows written, so the bench can say what a lifecycle costs PostgreSQL (issue 14).

CPU comes from the server's own processes (psutil), restricted to the backends connected to
the scenario's database plus the server's shared processes (WAL writer, checkpointer, ...):
on a shared server, other tenants' backends would otherwise be counted. Counters come from
`pg_stat_database` / `pg_stat_user_tables`, read after every other backend of the database has
exited (a backend flushes its statistics on exit; live ones only flush every second or so).
Statements come from `pg_stat_statements` when the server preloads it, else they are None."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import asyncpg
import psutil

_DB_COUNTERS = (
    "select xact_commit + xact_rollback as xacts, tup_inserted, tup_updated, tup_deleted"
    " from pg_stat_database where datname = current_database()"
)
_TABLES = (
    "select schemaname || '.' || relname as t, n_tup_ins as ins, n_tup_upd as upd,"
    " n_tup_del as del from pg_stat_user_tables"
)
_STATEMENTS = (
    "select coalesce(sum(calls), 0)::int8 from pg_stat_statements"
    " where dbid = (select oid from pg_database where datname = current_database())"
)
_BACKENDS = (
    "select pid, coalesce(datname = current_database(), backend_type <> 'client backend')"
    " as ours from pg_stat_activity where pid <> pg_backend_pid()"
)


def _cpu(pid: int) -> float | None:
    try:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return None


async def _flush(conn: asyncpg.Connection) -> None:
    """This connection's own pending statistics, flushed before anything is read."""
    with contextlib.suppress(asyncpg.PostgresError):
        await conn.execute("select pg_stat_force_next_flush()")


async def _counters(conn: asyncpg.Connection) -> dict[str, Any]:
    await _flush(conn)
    row = await conn.fetchrow(_DB_COUNTERS)
    tables = {r["t"]: (r["ins"], r["upd"], r["del"]) for r in await conn.fetch(_TABLES)}
    statements: int | None
    try:
        statements = await conn.fetchval(_STATEMENTS)
    except asyncpg.PostgresError:
        statements = None  # not preloaded (the embedded server and the test server)
    return {"db": dict(row) if row else {}, "tables": tables, "statements": statements}


class DbMeter:
    """`await start()` before the load, `await cpu_end()` when the load is done (before its
    connections close), `await finish(lifecycles)` once every other connection is closed."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.cpu_seconds = 0.0
        self.window = 0.0

    async def _processes(self) -> list[int]:
        rows = await self.conn.fetch(_BACKENDS)
        # Ours, and the shared ones with no database (WAL writer, checkpointer, ...); not other
        # databases' autovacuum workers or backends.
        return [r["pid"] for r in rows if r["ours"]]

    async def start(self) -> None:
        self._before = await _counters(self.conn)
        # Every process of the server now, so a backend that connects later starts from 0.
        postmaster = psutil.Process(await self.conn.fetchval("select pg_backend_pid()")).parent()
        self._cpu0 = (
            {p.pid: _cpu(p.pid) or 0.0 for p in postmaster.children()} if postmaster else {}
        )
        self._started = time.monotonic()

    async def cpu_end(self) -> None:
        total = 0.0
        for pid in await self._processes():
            now = _cpu(pid)
            if now is not None:
                total += now - self._cpu0.get(pid, 0.0)
        self.cpu_seconds = total
        self.window = time.monotonic() - self._started

    async def _quiet(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            others = await self.conn.fetchval(
                "select count(*) from pg_stat_activity"
                " where datname = current_database() and pid <> pg_backend_pid()"
            )
            if not others:
                return
            await asyncio.sleep(0.05)

    async def finish(self, lifecycles: int) -> dict[str, Any]:
        await self._quiet(10.0)
        after = await _counters(self.conn)
        n = max(lifecycles, 1)
        before = self._before
        db0, db1 = before["db"], after["db"]

        def d(key: str) -> int:
            return int(db1.get(key, 0)) - int(db0.get(key, 0))

        rows = {}
        for table, (ins, upd, dele) in after["tables"].items():
            i0, u0, d0 = before["tables"].get(table, (0, 0, 0))
            written = (ins - i0) + (upd - u0) + (dele - d0)
            if written:
                rows[table] = {
                    "inserted": round((ins - i0) / n, 2),
                    "updated": round((upd - u0) / n, 2),
                    "deleted": round((dele - d0) / n, 2),
                }
        statements = None
        if before["statements"] is not None and after["statements"] is not None:
            statements = round((after["statements"] - before["statements"]) / n, 2)
        return {
            "postgres_cpu_ms_per_lifecycle": round(1000 * self.cpu_seconds / n, 3),
            "postgres_cores": round(self.cpu_seconds / self.window, 2) if self.window else None,
            "transactions_per_lifecycle": round(d("xacts") / n, 2),
            "statements_per_lifecycle": statements,
            "rows_written_per_lifecycle": round(
                (d("tup_inserted") + d("tup_updated") + d("tup_deleted")) / n, 2
            ),
            "rows_by_table": rows,
        }
