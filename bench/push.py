"""6. Push throughput: deliveries/s through the engine vs the fakes' own ceiling (same run),
and the token server's tokens/s and latency."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from typing import Any

import aiohttp
import asyncpg
import jwt

from bench import stats
from bench.config import REPO
from bench.db import create_pairs, create_users, seed_ringing
from bench.fakes import Arrivals
from bench.procs import CpuMeter, environment, start_token_server, start_worker
from bench.scenarios import Context

PUSH_CONCURRENCY = 64  # the worker's default PUSH_CONCURRENCY, used by the blast as well
JWT_SECRET = "bench-local-jwt-secret-at-least-32-characters"
AGORA_APP_ID = "970CA35de60c44645bbae8a215061b33"
AGORA_APP_CERT = "5CFd2fd1755d40ecb72977518be15d3b"
ISSUER_BASE = "http://127.0.0.1:9"  # the JWT issuer; never contacted in SUPABASE_JWT_SECRET mode


def _rate(times: list[float]) -> float:
    """Deliveries per second between the first and the last arrival."""
    if len(times) < 2:
        return 0.0
    return (len(times) - 1) / (max(times) - min(times))


async def _arrivals(arrivals: Arrivals, n: int, timeout: float) -> list[float]:
    deadline = time.monotonic() + timeout
    while len(arrivals.times) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return [t for t, _, _ in arrivals.times]


async def _engine(ctx: Context, platform: str, n: int) -> dict[str, Any]:
    """n pending ring deliveries, then a worker: claim → send → record, batch after batch."""
    async with ctx.server.database("push") as dsn:
        conn = await asyncpg.connect(dsn)
        pairs = await create_pairs(conn, min(n, 1000), platform, alert_token=False)
        await seed_ringing(conn, pairs, n, (55.0, 55.0))
        await conn.execute(
            "delete from orchestrator.jobs;"
            " insert into public.push_deliveries"
            "   (call_id, device_id, recipient_id, kind, provider, seq, expires_at)"
            " select c.id, d.id, d.user_id, 'ring', case d.platform when 'ios' then 'apns'"
            "        else 'fcm' end, c.version, c.ring_deadline"
            " from public.calls c join public.push_devices d on d.user_id = c.callee_id"
        )
        fake = ctx.fakes.apns if platform == "ios" else ctx.fakes.fcm
        ctx.fakes.reset()
        worker = await start_worker(dsn, f"push-{platform}", **ctx.worker_env())
        try:
            with CpuMeter([worker]) as cpu:
                times = await _arrivals(fake.arrivals, n, 120)
        finally:
            await worker.stop()
        sent = await conn.fetchval(
            "select count(*) from public.push_deliveries where status = 'sent'"
        )
        await conn.close()
    # The worker starts sending during its first scan, before the meter opens: CPU per 1,000
    # deliveries counts exactly the deliveries that arrived inside the meter's window.
    window = [t for t in times if cpu.started <= t <= cpu.started + cpu.seconds]
    per_1000 = 1000 / len(window) if window else None
    return {
        "deliveries": n,
        "arrived": len(times),
        "arrived_in_cpu_window": len(window),
        "recorded_sent": sent,
        "per_s": round(_rate(times), 1),
        "duplicates": fake.duplicates(),
        "cpu": cpu.as_dict(),
        "cpu_s_per_1000": {
            "worker": round(cpu.worker * per_1000, 3) if per_1000 else None,
            "postgres_all_processes": round(cpu.postgres * per_1000, 3) if per_1000 else None,
        },
    }


async def _blast(ctx: Context, platform: str, n: int) -> dict[str, Any]:
    fake = ctx.fakes.apns if platform == "ios" else ctx.fakes.fcm
    ctx.fakes.reset()
    env = environment(**ctx.fakes.push_env())
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.push_blast",
        platform,
        str(n),
        str(PUSH_CONCURRENCY),
        env=env,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    with CpuMeter([]) as cpu:
        out, err = await asyncio.wait_for(proc.communicate(), 180)
    if proc.returncode != 0:
        raise RuntimeError(f"push_blast failed: {err.decode(errors='replace')[-2000:]}")
    times = sorted(t for t, _, _ in fake.arrivals.times)[1:]  # the first one warmed up
    report = json.loads(out.decode().strip().splitlines()[-1])
    return {
        "deliveries": n,
        "arrived": len(times),
        "per_s": round(_rate(times), 1),
        "client": report,
        "cpu": cpu.as_dict(),
    }


async def push_throughput(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    result: dict[str, Any] = {"deliveries": cfg.push_deliveries, "concurrency": PUSH_CONCURRENCY}
    for platform, provider in (("android", "fcm"), ("ios", "apns")):
        runs = []
        for repeat in range(cfg.repeats):
            if repeat % 2 == 0:
                engine = await _engine(ctx, platform, cfg.push_deliveries)
                ceiling = await _blast(ctx, platform, cfg.push_deliveries)
            else:
                ceiling = await _blast(ctx, platform, cfg.push_deliveries)
                engine = await _engine(ctx, platform, cfg.push_deliveries)
            ratio = engine["per_s"] / ceiling["per_s"] if ceiling["per_s"] else 0.0
            runs.append({"engine": engine, "fake_ceiling": ceiling, "ratio": round(ratio, 4)})
            ctx.log(
                f"  push {provider} run {repeat + 1}: engine {engine['per_s']}/s,"
                f" fake ceiling {ceiling['per_s']}/s ({100 * ratio:.0f} %)"
            )
        result[provider] = {
            "engine_per_s": stats.repeated(r["engine"]["per_s"] for r in runs),
            "fake_ceiling_per_s": stats.repeated(r["fake_ceiling"]["per_s"] for r in runs),
            "ratio": stats.repeated(r["ratio"] for r in runs),
            "duplicates": sum(r["engine"]["duplicates"] for r in runs),
            "worker_cpu_s_per_1000": stats.repeated(
                r["engine"]["cpu_s_per_1000"]["worker"] for r in runs
            ),
            "postgres_cpu_s_per_1000": stats.repeated(
                r["engine"]["cpu_s_per_1000"]["postgres_all_processes"] for r in runs
            ),
            "runs": runs,
        }
    return result


# --- the token server ---------------------------------------------------------------------


def _access_token(user: uuid.UUID, session: uuid.UUID) -> str:
    now = int(time.time())
    claims = {
        "iss": f"{ISSUER_BASE}/auth/v1",
        "aud": "authenticated",
        "sub": str(user),
        "role": "authenticated",
        "session_id": str(session),
        "exp": now + 3600,
        "iat": now,
        "aal": "aal1",
        "is_anonymous": False,
    }
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


async def _token_load(
    base: str, grants: list[tuple[uuid.UUID, str]], clients: int, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    until = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def client() -> None:
            while time.monotonic() < until:
                call_id, token = random.choice(grants)
                started = time.monotonic()
                async with http.post(
                    f"{base}/v1/calls/{call_id}/agora-token",
                    headers={"Authorization": f"Bearer {token}"},
                ) as response:
                    await response.read()
                    status = response.status
                latencies.append(time.monotonic() - started)
                statuses[status] = statuses.get(status, 0) + 1

        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.monotonic() - started
    ok = statuses.get(200, 0)
    return {
        "requests": len(latencies),
        "tokens_per_s": round(ok / elapsed, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "latency": stats.latency_ms(latencies),
    }


async def token_server(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    users = 200
    async with ctx.server.database("tokens") as dsn:
        conn = await asyncpg.connect(dsn)
        callers = await create_users(conn, users, "c")
        callees = await create_users(conn, users, "e")
        grants: list[tuple[uuid.UUID, str]] = []
        for caller, callee in zip(callers, callees, strict=True):
            session = await conn.fetchval(
                "insert into auth.sessions (user_id) values ($1) returning id", caller
            )
            call_id = await conn.fetchval(
                "insert into public.calls (caller_id, callee_id) values ($1, $2) returning id",
                caller,
                callee,
            )
            grants.append((call_id, _access_token(caller, session)))
        server, base = await start_token_server(
            dsn,
            SUPABASE_URL=ISSUER_BASE,
            SUPABASE_JWT_SECRET=JWT_SECRET,
            AGORA_APP_ID=AGORA_APP_ID,
            AGORA_APP_CERT=AGORA_APP_CERT,
            RATE_LIMIT_PER_USER="100000000/minute",
            RATE_LIMIT_PER_IP="100000000/minute",
            DB_POOL_SIZE=str(cfg.worker_pool),
        )
        runs = []
        try:
            await _token_load(base, grants[:10], 4, 0.3)  # warm-up: pool, caches
            for repeat in range(cfg.repeats):
                with CpuMeter([server]) as cpu:
                    run = await _token_load(base, grants, cfg.token_clients, cfg.token_seconds)
                run["cpu"] = cpu.as_dict()
                runs.append(run)
                ctx.log(
                    f"  token server run {repeat + 1}: {run['tokens_per_s']} tokens/s,"
                    f" p99 {run['latency'].get('p99_ms')} ms"
                )
        finally:
            await server.stop()
        issued = await conn.fetchval(
            "select count(*) from public.call_audit where event = 'token_issued'"
        )
        await conn.close()
    return {
        "mode": "SUPABASE_JWT_SECRET (HS256), AUTH_CHECK_SESSION=1, `orchestrator serve`",
        "clients": cfg.token_clients,
        "seconds": cfg.token_seconds,
        "tokens_per_s": stats.repeated(r["tokens_per_s"] for r in runs),
        "latency": stats.repeated_dists([r["latency"] for r in runs], ("p50_ms", "p99_ms")),
        "audited_token_issued": issued,
        "runs": runs,
    }
