"""The MQTT relay's SQL (migration 20261201000500): an id watermark, a txid safety net.

A round: read the watermark (the last id drawn and the transactions then writing call_audit),
wait until those transactions have ended, then publish the rows after the cursor up to the
watermark in id order: they are all committed or never will be, so ids go out in order and
none is skipped. The same statement also returns the "late" rows: at or below the cursor's id
yet not visible in its horizon snapshot. There are none unless an assumption broke (see the
migration); they are published rather than lost. Snapshots travel as text (no asyncpg codec).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

RELAY_NAME = "mqtt"
# Session advisory lock (two-int space; 7337 is lock_user's, 7338 the migration lock).
LOCK_SQL = "select pg_try_advisory_lock(7339, 1)"
WATERMARK_SQL = "select last_id, writers from orchestrator.relay_watermark()"
# Which of these transactions still write call_audit (the lock goes only at their end).
WRITING_SQL = """
select coalesce(array_agg(l.virtualtransaction), '{}') from pg_catalog.pg_locks l
where l.virtualtransaction = any($1::text[]) and l.locktype = 'relation'
  and l.relation = 'public.call_audit'::regclass and l.mode = 'RowExclusiveLock'
"""

# Who may read a row: the SQL function the call_audit RLS policy uses too (migration
# 20261202000300), so MQTT shows a participant exactly what a SELECT would.
READERS = "orchestrator.audit_readers(a.event, a.actor_id, c.caller_id, c.callee_id) as readers"

_COLUMNS = f"""a.id, a.call_id, a.event, a.to_status, a.end_reason, a.call_version, a.actor_id,
       a.occurred_at, c.caller_id, c.callee_id, c.status as now_status,
       c.end_reason as now_end_reason, c.version as now_version, {READERS}"""

# $1 cursor id, $2 cursor horizon, $3 watermark, $4 page size.
PAGE_SQL = f"""
with s as (select pg_current_snapshot() as now, $2::text::pg_snapshot as horizon)
select s.now::text as snapshot, p.*
from s left join lateral (
  (select true as late, {_COLUMNS}
   from (select x.* from public.call_audit x
         where x.txid >= pg_snapshot_xmax(s.horizon) and x.id <= $1
         union all
         select x.* from public.call_audit x
         where x.txid in (select pg_snapshot_xip(s.horizon)) and x.id <= $1) a
   join public.calls c on c.id = a.call_id
   where not pg_visible_in_snapshot(a.txid, s.horizon)
   order by a.id)
  union all
  (select false as late, {_COLUMNS}
   from public.call_audit a join public.calls c on c.id = a.call_id
   where a.id > $1 and a.id <= $3
   order by a.id limit $4)
) p on true
"""

LOAD_SQL = """
select last_id, horizon::text as horizon from orchestrator.relay_cursor where name = $1
"""
SEED_SQL = """
insert into orchestrator.relay_cursor (name, last_id, horizon)
select $1, coalesce(max(a.id), 0), pg_current_snapshot() from public.call_audit a
on conflict (name) do nothing
"""
SAVE_SQL = """
update orchestrator.relay_cursor
set last_id = $2, horizon = $3::text::pg_snapshot, updated_at = now(), updated_by = $4
where name = $1
"""

# Every call that has not ended, with its latest audit row a participant may read (for the
# retained state: an event hidden from them never names it).
OPEN_CALLS_SQL = f"""
select a.id, c.id as call_id, a.event, null::text as to_status, null::text as end_reason,
       null::integer as call_version, a.actor_id, a.occurred_at, c.caller_id, c.callee_id,
       c.status as now_status, c.end_reason as now_end_reason, c.version as now_version,
       {READERS}
from public.calls c
cross join lateral (
  select x.id, x.event, x.actor_id, x.occurred_at from public.call_audit x
  where x.call_id = c.id
    and cardinality(orchestrator.audit_readers(x.event, x.actor_id, c.caller_id, c.callee_id)) > 0
  order by x.id desc limit 1
) a
where c.status <> 'ended'
order by a.id
"""

# Age of the first audit row after the persisted cursor (ids follow time closely enough).
LAG_SQL = """
select coalesce((
  select extract(epoch from now() - a.occurred_at)::float8 from public.call_audit a
  where a.id > (select r.last_id from orchestrator.relay_cursor r where r.name = $1)
  order by a.id limit 1), 0)
"""


@dataclass(frozen=True, slots=True)
class Cursor:
    last_id: int  # published: every row with id <= last_id visible in `horizon`
    horizon: str


@dataclass(frozen=True, slots=True)
class Page:
    late: list[asyncpg.Record]
    rows: list[asyncpg.Record]
    following: Cursor  # the cursor once every row of the page is acknowledged

    @property
    def all_rows(self) -> list[asyncpg.Record]:
        return [*self.late, *self.rows]


async def try_lock(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval(LOCK_SQL))


async def watermark(conn: asyncpg.Connection) -> tuple[int, list[str]]:
    row = await conn.fetchrow(WATERMARK_SQL)
    assert row is not None
    return int(row["last_id"]), list(row["writers"])


async def still_writing(conn: asyncpg.Connection, writers: list[str]) -> list[str]:
    return list(await conn.fetchval(WRITING_SQL, writers))


async def load_cursor(conn: asyncpg.Connection) -> Cursor:
    row = await conn.fetchrow(LOAD_SQL, RELAY_NAME)
    if row is None:
        await conn.execute(SEED_SQL, RELAY_NAME)
        row = await conn.fetchrow(LOAD_SQL, RELAY_NAME)
    assert row is not None
    return Cursor(int(row["last_id"]), str(row["horizon"]))


async def save_cursor(conn: asyncpg.Connection, cursor: Cursor, worker_id: str) -> None:
    await conn.execute(SAVE_SQL, RELAY_NAME, cursor.last_id, cursor.horizon, worker_id)


async def fetch_page(conn: asyncpg.Connection, cursor: Cursor, upto: int, limit: int) -> Page:
    """Rows after the cursor up to `upto` (a watermark whose writers have ended), and late rows."""
    found = await conn.fetch(PAGE_SQL, cursor.last_id, cursor.horizon, upto, limit)
    snapshot = str(found[0]["snapshot"])
    late = [r for r in found if r["late"]]
    rows = [r for r in found if r["late"] is False]
    last = int(rows[-1]["id"]) if len(rows) >= limit else upto
    return Page(late, rows, Cursor(max(last, cursor.last_id), snapshot))


async def open_calls(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(OPEN_CALLS_SQL)
    return rows


async def lag_seconds(pool: asyncpg.Pool) -> float:
    async with pool.acquire() as conn:
        return float(await conn.fetchval(LAG_SQL, RELAY_NAME))
