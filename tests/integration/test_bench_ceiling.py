"""The bench's real ceiling and its database meter (issue 14), on a real PostgreSQL: the ceiling
really records 3 audited transitions per lifecycle durably, and the meter attributes the
server's CPU, transactions and rows to exactly the scenario's database."""

from __future__ import annotations

import time

import asyncpg
import pytest

from bench.ceiling import real_ceiling
from bench.dbwork import DbMeter

# serial: timing and CPU figures; `make test` runs these alone, after the parallel part.
pytestmark = [pytest.mark.postgres, pytest.mark.serial]


async def test_the_real_ceiling_records_every_transition_with_its_audit_row(
    fresh_dsn: str,
) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    try:
        meter = DbMeter(conn)
        await meter.start()
        result = await real_ceiling(fresh_dsn, 4, 0.5, meter.cpu_end)
        figures = await meter.finish(result["lifecycles"])
        n = result["lifecycles"]
        assert n > 0 and not result["errors"]
        ended = await conn.fetchval("select count(*) from bench_min.calls where status = 'ended'")
        events = await conn.fetch(
            "select event, count(*) as k from bench_min.audit group by 1 order by 1"
        )
    finally:
        await conn.close()
    # Every lifecycle that counted went all the way, each transition with one audit row.
    assert ended == n
    assert {r["event"]: r["k"] for r in events} == {"accepted": n, "created": n, "ended": n}
    assert result["transitions_per_s"] == pytest.approx(3 * n / result["seconds"], rel=0.01)
    # One transaction per transition, plus a fixed handful (the meter's own queries, the
    # schema, each connection's setup), two rows written each.
    extra = figures["transactions_per_lifecycle"] * n - 3 * n
    assert -0.01 * n <= extra <= 60, figures
    assert figures["rows_by_table"]["bench_min.audit"]["inserted"] == 1.0 * 3
    assert figures["rows_by_table"]["bench_min.calls"] == {
        "inserted": 1.0,
        "updated": 2.0,
        "deleted": 0.0,
    }
    assert figures["postgres_cpu_ms_per_lifecycle"] > 0  # the backends did the work


async def test_the_meter_does_not_count_another_databases_work(
    fresh_dsn: str, migrated_dsn: str
) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    other = await asyncpg.connect(migrated_dsn)
    try:
        meter = DbMeter(conn)
        await meter.start()
        # Busy work in another database on the same server: none of it may be ours.
        began = time.perf_counter()
        await other.execute("select count(*) from generate_series(1, 3000000)")
        busy = time.perf_counter() - began
        await meter.cpu_end()
        figures = await meter.finish(1)
    finally:
        await other.close()
        await conn.close()
    assert busy > 0.15  # the other database's work would show if it were counted
    assert figures["postgres_cpu_ms_per_lifecycle"] < 1000 * busy / 2
    assert figures["rows_written_per_lifecycle"] == 0
