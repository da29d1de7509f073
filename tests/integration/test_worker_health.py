"""The worker's health endpoints, metrics, and a database outage it rides out."""

from __future__ import annotations

import aiohttp
import asyncpg
import pytest

from tests.support.db import add_device, client_update, create_user, insert_call
from tests.support.tcp_proxy import TcpProxy, proxied
from tests.support.wait import wait_for
from tests.support.worker import running_worker

pytestmark = pytest.mark.postgres


async def _get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status, await r.text()


async def test_health_ready_and_metrics(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    a, b = await create_user(conn), await create_user(conn)
    await add_device(conn, b, "android")
    async with running_worker(fresh_dsn) as worker:
        port = worker.hooks.metrics_port
        assert port
        assert (await _get(port, "/healthz"))[0] == 200
        status, body = await _get(port, "/readyz")
        assert status == 200 and '"database": true' in body and '"event_source": true' in body
        call_id = await insert_call(conn, a, b)

        async def rung() -> bool:
            return bool(
                await conn.fetchval(
                    "select count(*) from public.push_deliveries where call_id = $1"
                    " and status = 'sent'",
                    call_id,
                )
            )

        await wait_for(rung)
        await client_update(conn, b, call_id, "ended", "declined")

        async def counted() -> str | None:
            text = (await _get(port, "/metrics"))[1]
            return (
                text
                if 'orchestrator_calls_ended_total{end_reason="declined"} 1.0' in text
                else None
            )

        text = await wait_for(counted)
    assert "orchestrator_time_to_ring_seconds_count 1.0" in text
    assert 'orchestrator_pushes_total{kind="ring",outcome="sent",provider="log"} 1.0' in text
    await conn.close()


async def test_a_database_outage_is_not_ready_then_recovers_losing_nothing(
    fresh_dsn: str,
) -> None:
    proxy = TcpProxy(proxied(fresh_dsn, 0)[1])
    await proxy.start()
    through_proxy, _ = proxied(fresh_dsn, proxy.port)
    direct = await asyncpg.connect(fresh_dsn)
    a, b, c = [await create_user(direct) for _ in range(3)]
    await add_device(direct, b, "android")
    await add_device(direct, c, "android")
    async with running_worker(through_proxy) as worker:
        port = worker.hooks.metrics_port
        assert port
        first = await insert_call(direct, a, b)

        async def rung(call_id: object) -> bool:
            return bool(
                await direct.fetchval(
                    "select count(*) from public.push_deliveries where call_id = $1"
                    " and status = 'sent'",
                    call_id,
                )
            )

        await wait_for(lambda: rung(first))
        await proxy.stop()  # the database vanishes for the worker

        async def not_ready() -> bool:
            return (await _get(port, "/readyz"))[0] == 503

        await wait_for(not_ready)
        during = await insert_call(direct, c, a)  # a client keeps calling meanwhile
        await client_update(direct, a, first, "ended", "cancelled")
        proxy = TcpProxy(proxied(fresh_dsn, 0)[1])
        proxy.port = int(through_proxy.rsplit(":", 1)[1].split("/")[0])
        await proxy.start()  # back on the same port

        async def ready() -> bool:
            return (await _get(port, "/readyz"))[0] == 200

        await wait_for(ready, timeout=20)
        await wait_for(
            lambda: direct.fetchval(
                "select status = 'ended' from public.calls where id = $1", during
            ),
            timeout=20,
        )
        await wait_for(
            lambda: direct.fetchval(
                "select count(*) = 1 from public.push_deliveries where call_id = $1"
                " and kind = 'missed' and status = 'sent'",
                first,
            ),
            timeout=20,
        )
    await proxy.stop()
    reason = await direct.fetchval("select end_reason from public.calls where id = $1", during)
    assert reason == "unreachable"  # a has no device: decided after the outage, not lost
    await direct.close()


async def test_worker_serve_runs_the_token_server_in_the_same_loop(fresh_dsn: str) -> None:
    import asyncio

    from orchestrator.worker import WorkerHooks, run_worker
    from tests.support.services import free_port
    from tests.support.worker import worker_settings

    port = free_port()
    settings = worker_settings(
        fresh_dsn,
        PORT=str(port),
        AGORA_APP_ID="970CA35de60c44645bbae8a215061b33",
        AGORA_APP_CERT="5CFd2fd1755d40ecb72977518be15d3b",
        SUPABASE_URL="http://127.0.0.1:9",
        SUPABASE_JWT_SECRET="x" * 40,
    )
    hooks = WorkerHooks()
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop, serve=True, hooks=hooks))
    try:
        await asyncio.wait_for(hooks.started.wait(), 15)
        status, body = await _get(port, "/readyz")
        assert status == 200, body
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{port}/v1/calls/00000000-0000-0000-0000-000000000000/agora-token"
            ) as reply,
        ):
            assert reply.status == 401  # the token server answers, and wants a JWT
        assert (await _get(hooks.metrics_port or 0, "/healthz"))[0] == 200
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
