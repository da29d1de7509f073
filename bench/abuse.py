"""Scenario 8 (issue 10): a bystander's time-to-ring while one account fans out to the device
cap as fast as the limits allow, next to the same figure with no attacker, in the same run.

The attacker owns two accounts: a caller and a "sink" that registered twice the cap of devices
through register_push_device (the cap keeps MAX_DEVICES_PER_USER). The caller calls the sink,
cancels as soon as the first ring arrives (so each call also queues `stop` and `missed`
pushes to every device) and calls again at once; the database refuses what the limits refuse
(CA010 one open call, CA012 CALLS_PER_MINUTE_PER_CALLER) and the attacker retries after a short
pause. Bystanders ring at a fixed rate (Android, FCM fake) in quiet and attacked phases
that alternate (`abuse_rounds` of each), so load drift on the machine hits both alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg

from bench import stats
from bench.db import Pair, cancel_call, client_pool, create_pairs, create_users, insert_call
from bench.load import open_loop_rings
from bench.procs import start_worker

if TYPE_CHECKING:
    from bench.scenarios import Context

REFUSED = {"CA010", "CA011", "CA012"}  # the limits at a client's insert
PER_MINUTE = 10  # CALLS_PER_MINUTE_PER_CALLER's default


@dataclass
class Attack:
    calls: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    rings: int = 0
    errors: list[str] = field(default_factory=list)


async def _register_sink(conn: asyncpg.Connection, sink: uuid.UUID, n: int) -> None:
    claims = f'{{"sub": "{sink}", "role": "authenticated"}}'
    for _ in range(n):
        async with conn.transaction():
            await conn.execute("set local role authenticated")
            await conn.execute("select set_config('request.jwt.claims', $1, true)", claims)
            await conn.execute(
                "select public.register_push_device('android', $1)",
                f"ok-abuse-{uuid.uuid4().hex}",
            )


async def _attack(
    ctx: Context, pool: asyncpg.Pool, pair: Pair, stop: asyncio.Event, attack: Attack
) -> None:
    """Call the sink, cancel on the first ring, again at once; back off only when refused."""
    arrivals = ctx.fakes.fcm.arrivals
    while not stop.is_set():
        call_id = uuid.uuid4()
        ring = arrivals.expect(call_id)
        try:
            async with pool.acquire() as conn:
                await insert_call(conn, pair, call_id)
            attack.calls += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ring, 5)
                attack.rings += 1
            async with pool.acquire() as conn:
                await cancel_call(conn, pair, call_id)
        except asyncpg.PostgresError as exc:
            code = exc.sqlstate or "?"
            attack.refused[code] = attack.refused.get(code, 0) + 1
            if code not in REFUSED and len(attack.errors) < 5:
                attack.errors.append(f"{code}: {exc}"[:200])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
        finally:
            arrivals.forget(call_id)


async def abuse(ctx: Context) -> dict[str, Any]:
    """`repeats` independent runs (a fresh database and worker each); the verdict is the median
    run's ratio. One run's p99 rests on a dozen samples per side, and on a shared machine a
    single hiccup on either side moves it by ×2 or more (five quiet runs: 0.74–3.31×)."""
    runs = [await _abuse_once(ctx) for _ in range(ctx.config.repeats)]
    ratios = [r["ratio_p99"] for r in runs]
    known = sorted((r for r in runs if r["ratio_p99"] is not None), key=lambda r: r["ratio_p99"])
    median = known[len(known) // 2] if known else runs[0]  # of two runs, the worse one
    return {**median, "ratio_p99_runs": ratios}


async def _abuse_once(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    rate, seconds, rounds = cfg.abuse_rate, cfg.abuse_seconds, cfg.abuse_rounds
    n, warmup = int(rate * seconds), 3 if cfg.quick else 10  # the quick run has < 60 s in all
    async with ctx.server.database("abuse") as dsn:
        conn = await asyncpg.connect(dsn)
        pairs = await create_pairs(conn, 2 * rounds * n + warmup, "android")
        attacker, sink = await create_users(conn, 2, "attacker")
        # The bench databases raise the per-caller limit (bench/db.py); here it is the product's.
        await conn.execute(
            "update orchestrator.settings set calls_per_minute_per_caller = $1", PER_MINUTE
        )
        cap = await conn.fetchval("select max_devices_per_user from orchestrator.settings")
        await _register_sink(conn, sink, 2 * cap)
        devices = await conn.fetchval(
            "select count(*) from public.push_devices where user_id = $1 and disabled_at is null",
            sink,
        )
        pool = await client_pool(dsn, 16)
        worker = await start_worker(dsn, "abuse", **ctx.worker_env())
        ctx.fakes.reset()
        quiet: list[float] = []
        attacked: list[float] = []
        lost = 0
        attack = Attack()
        attack_seconds = 0.0
        try:
            await open_loop_rings(pool, ctx.fakes.route, pairs[:warmup], 20, 0.5)
            # Quiet and attacked phases alternate, so a drift of the machine's load (other
            # processes) hits both figures alike.
            for i in range(2 * rounds):
                batch = pairs[warmup + i * n : warmup + (i + 1) * n]
                if i % 2 == 0:
                    run = await open_loop_rings(pool, ctx.fakes.route, batch, rate, seconds)
                    quiet += run.latencies
                else:
                    stop = asyncio.Event()
                    target = Pair(attacker, sink, uuid.uuid4(), "")
                    task = asyncio.create_task(_attack(ctx, pool, target, stop, attack))
                    started = time.monotonic()
                    run = await open_loop_rings(pool, ctx.fakes.route, batch, rate, seconds)
                    stop.set()
                    await task
                    attack_seconds += time.monotonic() - started
                    attacked += run.latencies
                lost += run.lost
        finally:
            await worker.stop()
            await pool.close()
        sink_pushes = await conn.fetch(
            "select d.kind, count(*) as n from public.push_deliveries d"
            " join public.calls c on c.id = d.call_id where c.caller_id = $1 group by 1",
            attacker,
        )
        await conn.close()
    quiet_lat, attacked_lat = stats.latency_ms(quiet), stats.latency_ms(attacked)
    p99_quiet, p99_attacked = quiet_lat.get("p99_ms"), attacked_lat.get("p99_ms")
    ratio = round(p99_attacked / p99_quiet, 3) if p99_quiet and p99_attacked else None
    ctx.log(
        f"  bystander p99 {p99_quiet} ms quiet, {p99_attacked} ms under attack (x{ratio}); "
        f"attacker calls {attack.calls}, refused {attack.refused}"
    )
    pushes = {r["kind"]: r["n"] for r in sink_pushes}
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "device_cap": cap,
        "calls_per_minute_per_caller": PER_MINUTE,
        "sink_devices_registered": 2 * cap,
        "sink_devices_active": devices,
        "bystander_quiet": quiet_lat,
        "bystander_attacked": attacked_lat,
        "ratio_p99": ratio,
        "rounds": rounds,
        "lost": lost,
        "attacker": {
            "calls": attack.calls,
            "rang": attack.rings,
            "refused": attack.refused,
            "errors": attack.errors,
            "pushes": pushes,
            "pushes_per_s": round(sum(pushes.values()) / attack_seconds, 1),
        },
    }
