"""The real ceiling (issue 14): the least SQL that records a lifecycle durably, with nothing
around it. Each transition (created → accepted → ended) is ONE statement: the row written by
primary key and its audit row inserted in the same CTE, committed on its own (the server's
default synchronous commit, so every transition is on disk when acknowledged). `pool_size`
connections run lifecycles back to back: as many statements in flight as the worker's pool,
no worker, no simulated app waiting on a ring. Tables of its own, so no trigger of the
product runs: this is what the machine can do, not what our schema costs."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from bench import stats

SCHEMA = """
create schema if not exists bench_min;
create table if not exists bench_min.calls (
  id uuid primary key,
  caller_id uuid not null,
  callee_id uuid not null,
  status text not null,
  version int not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create table if not exists bench_min.audit (
  id bigint generated always as identity primary key,
  call_id uuid not null,
  event text not null,
  at timestamptz not null default now()
);
"""
CREATE = (
    "with c as (insert into bench_min.calls (id, caller_id, callee_id, status, version)"
    " values ($1, $2, $3, 'ringing', 1) returning id)"
    " insert into bench_min.audit (call_id, event) select id, 'created' from c"
)
MOVE = (
    "with c as (update bench_min.calls set status = $2, version = version + 1,"
    " updated_at = now() where id = $1 and status = $3 returning id)"
    " insert into bench_min.audit (call_id, event) select id, $2 from c"
)
TRANSITIONS_PER_LIFECYCLE = 3
STATEMENTS_PER_LIFECYCLE = 3


async def real_ceiling(
    dsn: str,
    pool_size: int,
    seconds: float,
    before_close: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Lifecycles through `pool_size` connections for `seconds`; transitions/s and latency.
    `before_close` runs while the connections are still open (to read their backends' CPU)."""
    setup = await asyncpg.connect(dsn)
    try:
        await setup.execute(SCHEMA)
    finally:
        await setup.close()
    pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
    assert pool is not None
    lifecycles = 0
    latencies: list[float] = []
    errors: list[str] = []
    started = time.monotonic()
    until = started + seconds

    async def lane() -> None:
        nonlocal lifecycles
        async with pool.acquire() as conn:
            create = await conn.prepare(CREATE)
            move = await conn.prepare(MOVE)
            while time.monotonic() < until:
                call_id, began = uuid.uuid4(), time.monotonic()
                try:
                    await create.fetch(call_id, uuid.uuid4(), uuid.uuid4())
                    await move.fetch(call_id, "accepted", "ringing")
                    await move.fetch(call_id, "ended", "accepted")
                except Exception as exc:
                    if len(errors) < 5:
                        errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    return
                lifecycles += 1
                latencies.append(time.monotonic() - began)

    try:
        await asyncio.gather(*(lane() for _ in range(pool_size)))
        elapsed = time.monotonic() - started
        if before_close is not None:
            await before_close()
    finally:
        await pool.close()
    return {
        "what": "3 single-statement durable transitions per lifecycle (row by primary key +"
        " audit row in one CTE), pool-size connections, no worker, no client wait",
        "connections": pool_size,
        "lifecycles": lifecycles,
        "seconds": round(elapsed, 3),
        "transitions_per_s": round(TRANSITIONS_PER_LIFECYCLE * lifecycles / elapsed, 1),
        "lifecycles_per_s": round(lifecycles / elapsed, 1),
        "statements_per_lifecycle": STATEMENTS_PER_LIFECYCLE,
        "lifecycle_latency": stats.latency_ms(latencies),
        "errors": errors,
    }
