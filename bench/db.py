"""The bench's databases: one migrated template per run, a fresh copy per scenario run,
users and devices in bulk, and client writes done exactly as PostgREST does them."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from itertools import count

import asyncpg

from orchestrator.adapters.postgres.migrate import emulate_supabase, migrate
from orchestrator.adapters.postgres.pool import create_pool

CALLS_PER_MINUTE = 1_000_000  # the per-caller insert limit, raised in the bench databases
_serial = count(1)


def with_database(dsn: str, name: str) -> str:
    """The same server, another database (keeps ?host=… of a unix-socket URI)."""
    base, _, query = dsn.partition("?")
    head = base.rsplit("/", 1)[0]
    return f"{head}/{name}" + (f"?{query}" if query else "")


async def client_pool(dsn: str, size: int) -> asyncpg.Pool:
    # The product's own pool (no-op reset: clients' settings are all `set local`).
    return await create_pool(
        dsn, size=size, name="bench-client", min_size=size, command_timeout=None
    )


class Server:
    """The PostgreSQL server the bench runs on: a template and throwaway databases."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.template = f"bench_tpl_{os.getpid()}"
        self.created: list[str] = []

    async def _admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn)

    async def prepare(self) -> dict[str, object]:
        admin = await self._admin()
        try:
            await admin.execute(f"drop database if exists {self.template} with (force)")
            await admin.execute(f"create database {self.template}")
            info = {
                "server_version": await admin.fetchval("show server_version"),
                "synchronous_commit": await admin.fetchval("show synchronous_commit"),
                "fsync": await admin.fetchval("show fsync"),
                "shared_buffers": await admin.fetchval("show shared_buffers"),
                "max_connections": await admin.fetchval("show max_connections"),
            }
        finally:
            await admin.close()
        conn = await asyncpg.connect(with_database(self.dsn, self.template))
        try:
            await emulate_supabase(conn)
            await migrate(conn)
            await conn.execute(
                "update orchestrator.settings set calls_per_minute_per_caller = $1",
                CALLS_PER_MINUTE,
            )
        finally:
            await conn.close()
        return info

    async def fresh(self, label: str) -> str:
        name = f"bench_{os.getpid()}_{next(_serial)}_{label}"[:63]
        admin = await self._admin()
        try:
            await admin.execute(f"create database {name} template {self.template}")
        finally:
            await admin.close()
        self.created.append(name)
        return with_database(self.dsn, name)

    async def drop(self, dsn: str) -> None:
        name = dsn.partition("?")[0].rsplit("/", 1)[1]
        admin = await self._admin()
        try:
            await admin.execute(f"drop database if exists {name} with (force)")
        finally:
            await admin.close()
        if name in self.created:
            self.created.remove(name)

    async def cleanup(self) -> None:
        admin = await self._admin()
        try:
            for name in [*self.created, self.template]:
                await admin.execute(f"drop database if exists {name} with (force)")
        finally:
            await admin.close()
        self.created.clear()

    @asynccontextmanager
    async def database(self, label: str) -> AsyncIterator[str]:
        dsn = await self.fresh(label)
        try:
            yield dsn
        finally:
            await self.drop(dsn)


@dataclass(frozen=True)
class Pair:
    caller: uuid.UUID
    callee: uuid.UUID
    device: uuid.UUID  # the callee's device
    token: str  # its ring token (FCM registration token or the VoIP token)
    platform: str = "android"


async def create_users(conn: asyncpg.Connection, n: int, prefix: str = "u") -> list[uuid.UUID]:
    rows = await conn.fetch(
        "insert into auth.users (email, raw_user_meta_data)"
        " select $2 || '-' || g || '@bench.test', jsonb_build_object('full_name', 'User ' || g)"
        " from generate_series(1, $1) g returning id",
        n,
        f"{prefix}{uuid.uuid4().hex[:6]}",
    )
    return [r["id"] for r in rows]


async def create_pairs(
    conn: asyncpg.Connection, n: int, platform: str = "android", *, alert_token: bool = True
) -> list[Pair]:
    """n (caller, callee) pairs of distinct users; every callee has one ring-capable device.

    Android: an FCM token. iOS: a VoIP token, plus an alert token when `alert_token`."""
    users = await create_users(conn, 2 * n)
    callers, callees = users[:n], users[n:]
    ios = platform == "ios"
    rows = await conn.fetch(
        "insert into public.push_devices (user_id, platform, token, voip_token)"
        # APNs tokens are 64-200 hex: "ok-" hex-encoded (6f6b2d, the fakes' behaviour prefix)
        # in front of unique hex; FCM tokens may spell it out.
        " select u, $2, case when not $3 then null when $2 = 'ios'"
        "   then '6f6b2d' || md5('a' || u) || replace(u::text, '-', '')"
        "   else 'ok-alert-' || u end,"
        "        case when $2 = 'ios'"
        "   then '6f6b2d' || md5('v' || u) || replace(u::text, '-', '') else null end"
        " from unnest($1::uuid[]) as u returning id, user_id, token, voip_token",
        callees,
        platform,
        alert_token or not ios,
    )
    by_user = {r["user_id"]: r for r in rows}
    pairs = []
    for caller, callee in zip(callers, callees, strict=True):
        row = by_user[callee]
        token = row["voip_token"] if ios else row["token"]
        pairs.append(Pair(caller, callee, row["id"], token, platform))
    return pairs


def _as_user(user: uuid.UUID, statement: str) -> str:
    """One round trip, one transaction, as PostgREST runs a request: role + JWT claims."""
    claims = json.dumps({"sub": str(user), "role": "authenticated"})
    return (
        "begin; set local role authenticated;"
        f" select set_config('request.jwt.claims', '{claims}', true); {statement}; commit;"
    )


async def _run(conn: asyncpg.Connection, sql: str) -> None:
    try:
        await conn.execute(sql)
    except BaseException:
        if not conn.is_closed():
            try:
                await conn.execute("rollback")
            except Exception:
                conn.terminate()
        raise


async def insert_call(conn: asyncpg.Connection, pair: Pair, call_id: uuid.UUID) -> None:
    """The caller's app starts a call (its own id, as idempotent clients do)."""
    await _run(
        conn,
        _as_user(
            pair.caller,
            f"insert into public.calls (id, callee_id) values ('{call_id}', '{pair.callee}')",
        ),
    )


async def accept_call(conn: asyncpg.Connection, pair: Pair, call_id: uuid.UUID) -> None:
    await _run(
        conn,
        _as_user(
            pair.callee, f"update public.calls set status = 'accepted' where id = '{call_id}'"
        ),
    )


async def hang_up(conn: asyncpg.Connection, pair: Pair, call_id: uuid.UUID) -> None:
    await _run(
        conn,
        _as_user(
            pair.caller,
            "update public.calls set status = 'ended', end_reason = 'completed'"
            f" where id = '{call_id}'",
        ),
    )


async def cancel_call(conn: asyncpg.Connection, pair: Pair, call_id: uuid.UUID) -> None:
    await _run(
        conn,
        _as_user(
            pair.caller,
            "update public.calls set status = 'ended', end_reason = 'cancelled'"
            f" where id = '{call_id}' and status = 'ringing'",
        ),
    )


async def seed_ringing(
    conn: asyncpg.Connection,
    pairs: Sequence[Pair],
    n: int,
    spread: tuple[float, float],
    *,
    keep_pickups: bool = False,
) -> tuple[list[uuid.UUID], float]:
    """COPY n ringing calls as the system actor, deadlines spread evenly over `spread` seconds
    from now (database clock). The AFTER trigger writes an audit row and two jobs per call;
    the pickup jobs are removed in the same transaction unless `keep_pickups` (the calls stand
    for calls that were picked up and rung already). Returns the ids and the seconds it took."""
    ids = [uuid.uuid4() for _ in range(n)]
    async with conn.transaction():
        started = await conn.fetchval("select extract(epoch from clock_timestamp())::float8")
        base = await conn.fetchval("select now()")
        low, high = spread
        step = (high - low) / max(n - 1, 1)
        records = [
            (
                ids[i],
                pairs[i % len(pairs)].caller,
                pairs[i % len(pairs)].callee,
                base + timedelta(seconds=low + i * step),
            )
            for i in range(n)
        ]
        await conn.copy_records_to_table(
            "calls",
            schema_name="public",
            columns=["id", "caller_id", "callee_id", "ring_deadline"],
            records=records,
        )
        if not keep_pickups:
            await conn.execute("delete from orchestrator.jobs where kind = 'pickup'")
        ended = await conn.fetchval("select extract(epoch from clock_timestamp())::float8")
    return ids, float(ended - started)
