"""7. Presence: the NCS endpoint of `orchestrator serve` (notices/s, answer latency at a fixed
200 notices/s) and the lateness of presence timers (calls whose apps never beat)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import time
import uuid
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench import stats
from bench.db import accept_call, create_pairs, create_users, insert_call
from bench.procs import CpuMeter, start_token_server, start_worker
from bench.push import AGORA_APP_CERT, AGORA_APP_ID, ISSUER_BASE, JWT_SECRET
from bench.scenarios import Context

NCS_SECRET = "bench-ncs-secret"
NCS_RATE = 200.0  # notices/s for the latency figure (the issue's load)
PRESENCE_TIMEOUT = 5  # the smallest PRESENCE_TIMEOUT_SECONDS
_SEQ = itertools.count(1)


async def _accepted_calls(conn: asyncpg.Connection, n: int) -> list[uuid.UUID]:
    """Accepted calls seeded by the system (as a glare merge would accept them)."""
    users = await create_users(conn, 2 * n, "p")
    ids = []
    for i in range(n):
        async with conn.transaction():
            call_id = await conn.fetchval(
                "insert into public.calls (caller_id, callee_id) values ($1, $2) returning id",
                users[2 * i],
                users[2 * i + 1],
            )
            await conn.execute("update public.calls set status = 'accepted' where id = $1", call_id)
        ids.append(call_id)
    return ids


def _signed(call_id: uuid.UUID, uid: int) -> tuple[bytes, dict[str, str]]:
    seq = next(_SEQ)
    body = orjson.dumps({
        "noticeId": uuid.uuid4().hex, "productId": 1, "eventType": 103 + 1 * (seq % 2),
        "notifyMs": int(time.time() * 1000), "sid": uuid.uuid4().hex,
        "payload": {"channelName": str(call_id), "uid": uid, "platform": 1,
                    "clientSeq": seq, "reason": 2, "ts": int(time.time())},
    })  # fmt: skip
    signature = hmac.new(NCS_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Agora-Signature-V2": signature, "Content-Type": "application/json"}


async def _post(http: aiohttp.ClientSession, url: str, calls: list[uuid.UUID], i: int) -> int:
    body, headers = _signed(calls[i % len(calls)], 1 + (i // len(calls)) % 2)
    async with http.post(url, data=body, headers=headers) as response:
        await response.read()
        return response.status


async def _closed_loop(url: str, calls: list[uuid.UUID], clients: int, seconds: float) -> float:
    counter = itertools.count()
    ok = 0
    until = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as http:

        async def client() -> None:
            nonlocal ok
            while time.monotonic() < until:
                status = await _post(http, url, calls, next(counter))
                ok += status == 200  # after the await: `ok += await …` would lose updates

        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(clients)))
        return ok / (time.monotonic() - started)


async def _open_loop(
    url: str, calls: list[uuid.UUID], rate: float, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as http:

        async def one(i: int) -> None:
            began = time.monotonic()
            status = await _post(http, url, calls, i)
            latencies.append(time.monotonic() - began)
            statuses[status] = statuses.get(status, 0) + 1

        tasks = []
        start = time.monotonic()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # the schedule of an open-loop load, not a sync
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return {"statuses": {str(k): v for k, v in sorted(statuses.items())},
            "latency": stats.latency_ms(latencies)}  # fmt: skip


async def _ncs(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    seconds = 0.5 if cfg.quick else 5.0  # the quick run keeps `BENCH_QUICK=1` under 60 s
    async with ctx.server.database("ncs") as dsn:
        conn = await asyncpg.connect(dsn)
        # Presence on, with a timeout no run reaches: only the endpoint is measured.
        await conn.execute(
            "update orchestrator.presence_settings set source = 'agora', timeout_seconds = 300"
        )
        calls, (server, base) = await asyncio.gather(  # seed while the process starts
            _accepted_calls(conn, 20 if cfg.quick else 200),
            start_token_server(
                dsn, SUPABASE_URL=ISSUER_BASE, SUPABASE_JWT_SECRET=JWT_SECRET,
                AGORA_APP_ID=AGORA_APP_ID, AGORA_APP_CERT=AGORA_APP_CERT,
                AGORA_NCS_SECRET=NCS_SECRET, DB_POOL_SIZE=str(cfg.worker_pool),
            ),
        )  # fmt: skip
        url = f"{base}/v1/agora/events"
        try:
            await _closed_loop(url, calls, 4, 0.1 if cfg.quick else 0.3)  # warm-up
            with CpuMeter([server]) as cpu:
                per_s = await _closed_loop(url, calls, cfg.token_clients, seconds)
            fixed = await _open_loop(url, calls, NCS_RATE, seconds)
        finally:
            await server.stop()
        written = await conn.fetchval("select count(*) from orchestrator.ncs_notices")
        await conn.close()
    ctx.log(f"  NCS endpoint: {per_s:.0f} notices/s; at {NCS_RATE:.0f}/s p99"
            f" {fixed['latency'].get('p99_ms')} ms")  # fmt: skip
    return {
        "mode": "`orchestrator serve`, signed notices (join/leave alternating), durable writes",
        "clients": cfg.token_clients,
        "seconds": seconds,
        "notices_per_s": round(per_s, 1),
        "at_rate": NCS_RATE,
        "at_rate_result": fixed,
        "notices_written": written,
        "cpu": cpu.as_dict(),
    }


async def _timers(ctx: Context) -> dict[str, Any]:
    """Calls accepted at a steady rate whose apps never beat: each is due `timeout` s after
    its accept; lateness = ended_at − due on the database clock."""
    cfg = ctx.config
    rate, seconds = (50.0, 1.0) if cfg.quick else (100.0, 10.0)
    # The quick run injects a 2 s timer in the database (as tests do); the full run uses the
    # smallest PRESENCE_TIMEOUT_SECONDS through the environment.
    timeout = 2 if cfg.quick else PRESENCE_TIMEOUT
    n = int(rate * seconds)
    async with ctx.server.database("presence") as dsn:
        conn = await asyncpg.connect(dsn)
        await conn.execute(
            "update orchestrator.presence_settings set timeout_seconds = $1", timeout
        )
        env = {} if cfg.quick else {"PRESENCE_TIMEOUT_SECONDS": str(timeout)}
        pairs, worker = await asyncio.gather(
            create_pairs(conn, n),
            start_worker(dsn, "presence", PRESENCE_SOURCE="heartbeat", **env,
                         **ctx.worker_env(pushes=False)),
        )  # fmt: skip
        try:
            with CpuMeter([worker]) as cpu:
                start = time.monotonic()
                for i in range(n):
                    delay = start + i / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)  # open-loop schedule
                    # As the apps do it: the caller inserts, the callee accepts at once
                    # (client writes, so the worker hears of them as in production).
                    call_id = uuid.uuid4()
                    await insert_call(conn, pairs[i], call_id)
                    await accept_call(conn, pairs[i], call_id)
                deadline = time.monotonic() + timeout + 30
                while time.monotonic() < deadline and await conn.fetchval(
                    "select exists (select 1 from public.calls where status = 'accepted')"
                ):
                    await asyncio.sleep(0.2)
        finally:
            await worker.stop()
        rows = await conn.fetch(
            "select end_reason, extract(epoch from ended_at - accepted_at"
            " - make_interval(secs => $1))::float8 as late from public.calls",
            timeout,
        )
        await conn.close()
    lateness = [r["late"] for r in rows if r["end_reason"] == "connection_lost"]
    result = {
        "calls": n,
        "accept_rate": rate,
        "timeout_s": timeout,
        "ended_connection_lost": len(lateness),
        "lateness": stats.latency_ms(lateness),
        "cpu": cpu.as_dict(),
    }
    ctx.log(f"  presence timers: {len(lateness)}/{n} ended, lateness p99"
            f" {result['lateness'].get('p99_ms')} ms")  # fmt: skip
    return result


async def presence(ctx: Context) -> dict[str, Any]:
    if ctx.config.quick:  # no thresholds in the quick run: overlap the two to stay short
        ncs, timers = await asyncio.gather(_ncs(ctx), _timers(ctx))
        return {"ncs": ncs, "timers": timers}
    return {"ncs": await _ncs(ctx), "timers": await _timers(ctx)}
