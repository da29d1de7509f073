"""The MQTT relay's SQL: a snapshot cursor over call_audit (migration 20261201000500).

A window is every audit row whose `txid` is visible in the window's snapshot and not in the
previous one (`done`). Rows of transactions still running at a snapshot are in its xip list and
fall into the window in which they commit, so rows that commit out of id order are never
skipped, and a long transaction elsewhere never stalls the relay. Within a window, rows go out
in id order (a call's status events hold its row lock, so their ids follow their commits).
Snapshots travel as text: asyncpg has no codec for `pg_snapshot`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import asyncpg

RELAY_NAME = "mqtt"
# Session advisory lock (two-int space; 7337 is lock_user's, 7338 the migration lock).
LOCK_SQL = "select pg_try_advisory_lock(7339, 1)"


@dataclass(frozen=True, slots=True)
class Cursor:
    done: str  # every row visible in this snapshot is published
    window: str | None = None  # the window being paged through
    last_id: int = 0  # rows of `window` with id <= last_id are published

    def after_page(self, window: str, last_id: int, full: bool) -> Cursor:
        """The cursor once a page of `window` ending at `last_id` has been acknowledged."""
        if full:
            return replace(self, window=window, last_id=last_id)
        return Cursor(done=window)  # the window is exhausted


# Candidate rows: not visible in `done` means txid >= xmax(done) or txid in xip(done); both
# are index lookups on call_audit (txid).
PAGE_SQL = """
with w as (
  select $1::text::pg_snapshot as done,
         coalesce($2::text::pg_snapshot, pg_current_snapshot()) as win
)
select w.win::text as win, p.*
from w left join lateral (
  select a.id, a.call_id, a.event, a.to_status, a.end_reason, a.call_version, a.actor_id,
         a.occurred_at, c.caller_id, c.callee_id, c.status as now_status,
         c.end_reason as now_end_reason, c.version as now_version
  from (
    select x.* from public.call_audit x where x.txid >= pg_snapshot_xmax(w.done)
    union all
    select x.* from public.call_audit x
    where x.txid in (select pg_snapshot_xip(w.done))
  ) a
  join public.calls c on c.id = a.call_id
  where a.txid < pg_snapshot_xmax(w.win)
    and not pg_visible_in_snapshot(a.txid, w.done)
    and pg_visible_in_snapshot(a.txid, w.win)
    and a.id > $3
  order by a.id
  limit $4
) p on true
"""

# The next pages of a window: in id order straight off the primary key from the last id
# (a catch-up window can hold most of the table; re-sorting it for every page would not do).
NEXT_PAGE_SQL = """
select a.id, a.call_id, a.event, a.to_status, a.end_reason, a.call_version, a.actor_id,
       a.occurred_at, c.caller_id, c.callee_id, c.status as now_status,
       c.end_reason as now_end_reason, c.version as now_version
from public.call_audit a
join public.calls c on c.id = a.call_id
where a.id > $3
  and a.txid < pg_snapshot_xmax($2::text::pg_snapshot)
  and not pg_visible_in_snapshot(a.txid, $1::text::pg_snapshot)
  and pg_visible_in_snapshot(a.txid, $2::text::pg_snapshot)
order by a.id
limit $4
"""

SAVE_SQL = """
update orchestrator.relay_cursor
set done_snapshot = $2::text::pg_snapshot, window_snapshot = $3::text::pg_snapshot,
    window_last_id = $4, updated_at = now(), updated_by = $5
where name = $1
"""

LOAD_SQL = """
with seed as (
  insert into orchestrator.relay_cursor (name, done_snapshot)
  values ($1, pg_current_snapshot())
  on conflict (name) do nothing
  returning done_snapshot, window_snapshot, window_last_id
)
select done_snapshot::text as done, window_snapshot::text as win, window_last_id from seed
union all
select done_snapshot::text, window_snapshot::text, window_last_id
from orchestrator.relay_cursor where name = $1
limit 1
"""

# Every call that has not ended, with its latest audit row (for the retained state).
OPEN_CALLS_SQL = """
select a.id, c.id as call_id, a.event, null::text as to_status, null::text as end_reason,
       null::integer as call_version, a.actor_id, a.occurred_at, c.caller_id, c.callee_id,
       c.status as now_status, c.end_reason as now_end_reason, c.version as now_version
from public.calls c
cross join lateral (
  select x.id, x.event, x.actor_id, x.occurred_at from public.call_audit x
  where x.call_id = c.id order by x.id desc limit 1
) a
where c.status <> 'ended'
order by a.id
"""

# Age of the oldest audit row the persisted cursor does not cover (0 when none).
LAG_SQL = """
select coalesce(extract(epoch from now() - min(a.occurred_at)), 0)::float8
from orchestrator.relay_cursor r
cross join lateral (
  select x.occurred_at, x.txid, x.id from public.call_audit x
  where x.txid >= pg_snapshot_xmax(r.done_snapshot)
  union all
  select x.occurred_at, x.txid, x.id from public.call_audit x
  where x.txid in (select pg_snapshot_xip(r.done_snapshot))
) a
where r.name = $1
  and not pg_visible_in_snapshot(a.txid, r.done_snapshot)
  and not coalesce(pg_visible_in_snapshot(a.txid, r.window_snapshot)
                   and a.id <= r.window_last_id, false)
"""


@dataclass(frozen=True, slots=True)
class Page:
    window: str
    rows: list[asyncpg.Record]
    full: bool

    @property
    def last_id(self) -> int:
        return int(self.rows[-1]["id"]) if self.rows else 0


async def try_lock(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval(LOCK_SQL))


async def load_cursor(conn: asyncpg.Connection) -> Cursor:
    row = await conn.fetchrow(LOAD_SQL, RELAY_NAME)
    assert row is not None
    return Cursor(row["done"], row["win"], int(row["window_last_id"]))


async def save_cursor(conn: asyncpg.Connection, cursor: Cursor, worker_id: str) -> None:
    await conn.execute(SAVE_SQL, RELAY_NAME, cursor.done, cursor.window, cursor.last_id, worker_id)


async def fetch_page(conn: asyncpg.Connection, cursor: Cursor, limit: int) -> Page:
    args = (cursor.done, cursor.window, cursor.last_id, limit)
    if cursor.window is not None:
        rows = await conn.fetch(NEXT_PAGE_SQL, *args)
        return Page(cursor.window, rows, len(rows) >= limit)
    rows = await conn.fetch(PAGE_SQL, *args)
    found = [r for r in rows if r["id"] is not None]
    return Page(str(rows[0]["win"]), found, len(found) >= limit)


async def open_calls(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(OPEN_CALLS_SQL)
    return rows


async def lag_seconds(pool: asyncpg.Pool) -> float:
    async with pool.acquire() as conn:
        return float(await conn.fetchval(LAG_SQL, RELAY_NAME))
