"""Presence changes travel on MQTT to both participants, like status events (private Mosquitto,
the real relay, the real database)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from orchestrator.adapters.mqtt.relay import RelayOptions, run_relay
from orchestrator.adapters.postgres.pool import create_pool
from orchestrator.metrics import Metrics
from tests.support.mosquitto import Mosquitto, Subscriber
from tests.support.presence import accepted_call, beat, set_presence
from tests.support.wait import wait_for
from tests.support.worker import worker_settings

pytestmark = [pytest.mark.postgres, pytest.mark.mosquitto]
FAST = RelayOptions(poll_interval=0.05, lock_retry=0.1, backoff_min=0.05, backoff_max=0.5,
                    lag_interval=0.1, keepalive=5, publish_timeout=3)  # fmt: skip


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    server = Mosquitto(tmp_path / "mosquitto")
    await server.start()
    yield server
    await server.stop()


async def test_participant_events_reach_both_participants(
    fresh_dsn: str, broker: Mosquitto
) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    await set_presence(conn, "heartbeat", 30)
    call = await accepted_call(conn)
    topics = {user: f"v1/users/{user}/calls" for user in (call.caller, call.callee)}
    pool = await create_pool(fresh_dsn, size=2, name="test-relay")
    stop = asyncio.Event()
    settings = worker_settings(fresh_dsn, MQTT_URL=broker.url(), WORKER_ID="presence-relay")
    try:
        async with (
            Subscriber(broker.port, [topics[call.caller]]) as caller_sub,
            Subscriber(broker.port, [topics[call.callee]]) as callee_sub,
        ):
            relay = asyncio.create_task(run_relay(settings, pool, Metrics(), stop, options=FAST))
            await beat(conn, call.callee, call.id)
            joined = await conn.fetchval(
                "select id from public.call_audit where call_id = $1"
                " and event = 'participant_joined'",
                call.id,
            )
            assert joined is not None

            async def both_got_it() -> bool:
                return joined in caller_sub.event_ids(
                    topics[call.caller]
                ) and joined in callee_sub.event_ids(topics[call.callee])

            await wait_for(both_got_it, 10)
            message = next(
                m for m in caller_sub.on(topics[call.caller]) if m.body["event_id"] == joined
            )
            assert message.body["event"] == "participant_joined"
            assert message.body["status"] == "accepted"
            stop.set()
            await asyncio.wait_for(relay, 15)
    finally:
        stop.set()
        await pool.close()
        await conn.close()
