"""7. Duplicates under ambiguous provider failures: the push-throughput setup (pending ring
deliveries, one worker, the real APNs/FCM clients against the protocol fakes) with 10 % of the
requests the fakes would accept failing ambiguously (late answer, dropped connection, GOAWAY
covering the stream). Counted at the fakes per (token, call, kind); run once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import asyncpg

from bench.db import create_pairs, seed_ringing
from bench.procs import start_worker
from bench.scenarios import Context

AMBIGUOUS = 0.10
PUSH_TIMEOUT = 1.0  # the worker's PUSH_TIMEOUT_SECONDS here; late answers come after it


async def _run(ctx: Context, platform: str, n: int) -> dict[str, Any]:
    fake = ctx.fakes.apns if platform == "ios" else ctx.fakes.fcm
    async with ctx.server.database("ambiguous") as dsn:
        conn = await asyncpg.connect(dsn)
        pairs = await create_pairs(conn, min(n, 1000), platform, alert_token=False)
        calls, _ = await seed_ringing(conn, pairs, n, (55.0, 55.0))
        await conn.execute(
            "delete from orchestrator.jobs;"
            " insert into public.push_deliveries"
            "   (call_id, device_id, recipient_id, kind, provider, seq, expires_at)"
            " select c.id, d.id, d.user_id, 'ring', case d.platform when 'ios' then 'apns'"
            "        else 'fcm' end, c.version, c.ring_deadline"
            " from public.calls c join public.push_devices d on d.user_id = c.callee_id"
        )
        ctx.fakes.reset()
        fake.ambiguous, fake.late_seconds = AMBIGUOUS, PUSH_TIMEOUT + 0.5
        fake.ambiguous_counts.clear()
        env = {**ctx.worker_env(), "PUSH_TIMEOUT_SECONDS": str(PUSH_TIMEOUT)}
        worker = await start_worker(dsn, f"ambiguous-{platform}", **env)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                pending = await conn.fetchval(
                    "select count(*) from public.push_deliveries where status = 'pending'"
                )
                if pending == 0:
                    break
                await asyncio.sleep(0.1)  # polling the ledger, not synchronising
        finally:
            await worker.stop()
            fake.ambiguous = 0.0
        statuses = dict(
            await conn.fetch(
                "select coalesce(last_error, 'none'), count(*) from public.push_deliveries"
                " where status = 'sent' group by 1"
            )
        )
        await conn.close()
    received = Counter(fake.counts.values())
    return {
        "deliveries": n,
        "requests": sum(fake.counts.values()),
        "ambiguous": dict(fake.ambiguous_counts),
        "received_once": received.get(1, 0),
        "received_twice": received.get(2, 0),
        "received_more": sum(v for k, v in received.items() if k > 2),
        "never_received": n - sum(received.values()),
        "recorded_sent": statuses,
        "calls": len(calls),
    }


async def ambiguous_pushes(ctx: Context) -> dict[str, Any]:
    if ctx.config.quick:  # ~10 s of fixed costs: too much for the smoke run's budget
        return {"share": AMBIGUOUS, "skipped": "full runs only (BENCH_QUICK=1)"}
    n = min(ctx.config.push_deliveries, 2000)
    result: dict[str, Any] = {"share": AMBIGUOUS, "deliveries": n}
    for platform, provider in (("android", "fcm"), ("ios", "apns")):
        run = await _run(ctx, platform, n)
        result[provider] = run
        ctx.log(
            f"  {provider}: {run['deliveries']} rings, {run['requests']} requests,"
            f" ambiguous {run['ambiguous']}; received twice {run['received_twice']},"
            f" more than twice {run['received_more']}, never {run['never_received']}"
        )
    return result
