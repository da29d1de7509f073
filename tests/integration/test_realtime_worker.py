"""The real worker with EVENT_SOURCE=supabase (no LISTEN): the fake Realtime server, fed from
the real test database, drives the real `realtime` client inside the worker.

One flow for every fault: calls placed before, during and after it each reach their right
state (rings sent; an answer accepted with a stop push to the Android device; nobody answering
ends `missed` at the deadline) with exactly one ring delivery per device. Nothing sleeps to
synchronise: every wait is a condition with a timeout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from tests.fakes.realtime_feed import PostgresFeed
from tests.fakes.realtime_server import FakeRealtimeServer
from tests.support.realtime_worker import (
    KEY,
    RING_TIMEOUT,
    FaultStep,
    RealtimeWorker,
    Scene,
    count,
    nothing,
    running_realtime_worker,
    until,
)
from tests.support.wait import wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture
async def server() -> AsyncIterator[FakeRealtimeServer]:
    async with FakeRealtimeServer(apikey=KEY) as srv:
        yield srv


@pytest.fixture
async def conn(fresh_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(fresh_dsn)
    yield connection
    await connection.close()


# The faults. `inject` starts one (and returns once it is in force), `heal` ends it.


async def drop_1006(server: FakeRealtimeServer, worker: RealtimeWorker) -> None:
    await server.drop_connections(1006)


async def drop_1000(server: FakeRealtimeServer, worker: RealtimeWorker) -> None:
    await server.drop_connections(1000)


async def outage(server: FakeRealtimeServer, worker: RealtimeWorker) -> None:
    before = worker.rebuilds()
    await server.stop()  # connection refused, longer than the client's own retry budget:
    await until(lambda: worker.rebuilds() >= before + 2)  # it gave up, and a rebuild failed
    assert not worker.source.healthy


async def restart(server: FakeRealtimeServer, worker: RealtimeWorker) -> None:
    await server.start()


async def phx_close(server: FakeRealtimeServer, worker: RealtimeWorker) -> None:
    await server.close_channels()


async def phx_error(server: FakeRealtimeServer, worker: RealtimeWorker) -> None:
    await server.error_channels()


async def system_error(server: FakeRealtimeServer, worker: RealtimeWorker) -> None:
    await server.system_error()


async def half_open(server: FakeRealtimeServer, worker: RealtimeWorker) -> None:
    await server.freeze()  # the socket stays up; nothing is read, answered or sent


async def join_unanswered(server: FakeRealtimeServer, worker: RealtimeWorker) -> None:
    server.ignore_joins = 2  # the next joins (after the reconnect) are never answered
    await server.drop_connections(1006)


async def corrupt_payloads(server: FakeRealtimeServer, worker: RealtimeWorker) -> None:
    """Every change arrives without a usable id (the source turns each into a re-scan), and a
    frame the client itself rejects comes too."""
    original = server.emit_change

    async def emit_change(record: dict[str, Any], type: str = "INSERT", **kw: Any) -> int:
        return await original({**record, "id": "not-a-uuid"}, type, **kw)

    server.emit_change = emit_change  # type: ignore[method-assign]  # until restore_payloads
    await server.emit_raw("postgres_changes", "garbage")


async def restore_payloads(server: FakeRealtimeServer, worker: RealtimeWorker) -> None:
    del server.emit_change  # the class's method again


async def drop_events(server: FakeRealtimeServer, worker: RealtimeWorker) -> None:
    server.drop_events = 1_000_000  # over quota: changes are skipped silently


async def deliver_events(server: FakeRealtimeServer, worker: RealtimeWorker) -> None:
    server.drop_events = 0


async def every_write_malformed(server: FakeRealtimeServer, worker: RealtimeWorker) -> None:
    def malformed() -> float:
        return count(worker.metrics, "orchestrator_reconciles_total", trigger="realtime_malformed")

    await until(lambda: malformed() >= DURING_WRITES)  # sent is not yet read by the client
    assert malformed() == DURING_WRITES  # each one a re-scan instead of a hint


async def every_write_dropped(server: FakeRealtimeServer, worker: RealtimeWorker) -> None:
    assert server.changes_dropped == DURING_WRITES


@dataclass(frozen=True)
class Fault:
    inject: FaultStep
    heal: FaultStep = nothing
    resubscribes: bool = True  # recovery means a new "Subscribed to PostgreSQL"
    rebuilds: tuple[int, int] = (0, 0)  # the whole client rebuilt between min and max times
    check: FaultStep = nothing  # what the fault did, once the "during" writes met it


DURING_WRITES = 4  # two inserts and two answers while the fault is in force


FAULTS = {
    "socket_dropped_1006": Fault(drop_1006),
    "socket_closed_1000": Fault(drop_1000),
    "outage_beyond_retry_budget": Fault(outage, restart, rebuilds=(2, 99)),
    "phx_close": Fault(phx_close, rebuilds=(1, 1)),
    "phx_error": Fault(phx_error),
    "system_error": Fault(system_error),
    "half_open": Fault(half_open, rebuilds=(1, 1)),
    "join_never_answered": Fault(join_unanswered, rebuilds=(1, 2)),
    "malformed_payload": Fault(
        corrupt_payloads, restore_payloads, resubscribes=False, check=every_write_malformed
    ),
    "events_dropped": Fault(
        drop_events, deliver_events, resubscribes=False, check=every_write_dropped
    ),
}


async def caught_up(feed: PostgresFeed, scene: Scene) -> None:
    """The feed has handed every client write so far to the fake server (delivered or not)."""
    await until(lambda: feed.forwarded + feed.missing == feed.notifications == scene.writes)
    assert feed.errors == 0 and feed.missing == 0


@pytest.mark.parametrize("name", list(FAULTS))
async def test_calls_before_during_and_after_a_fault(
    server: FakeRealtimeServer, fresh_dsn: str, conn: asyncpg.Connection, name: str
) -> None:
    fault = FAULTS[name]
    async with (
        server.feed_from_postgres(fresh_dsn) as feed,
        running_realtime_worker(fresh_dsn, server) as worker,
    ):
        scene = Scene(conn, worker)
        before = await scene.pair("before")
        await scene.rang(before)
        await until(lambda: worker.events() >= 2)  # their inserts came as Realtime events
        subscribes, delivered = worker.subscribes(), server.changes_delivered

        await fault.inject(server, worker)
        during = await scene.pair("during")
        await scene.answer(before[0])  # an answer while the stream is faulty
        await scene.rang(during)
        await scene.answer(during[0])
        await caught_up(feed, scene)  # those writes met the faulty stream
        await fault.check(server, worker)
        await fault.heal(server, worker)

        if fault.resubscribes:
            await until(lambda: worker.subscribes() > subscribes and worker.source.healthy)
        events = worker.events()
        after = await scene.pair("after")
        await scene.rang(after)
        await scene.answer(after[0])
        await scene.all_settled()
        await caught_up(feed, scene)
        await until(lambda: worker.events() >= events + 3)  # the "after" writes, as events
        assert worker.source.healthy
        await scene.check_outcomes()

    low, high = fault.rebuilds
    assert low <= worker.rebuilds() <= high, worker.rebuilds()
    assert server.changes_delivered > delivered
    assert count(worker.metrics, "orchestrator_wakeups_total", source="postgres") == 0
    scene.check_providers()  # nothing more was sent while the worker shut down


async def test_starts_while_realtime_is_down(
    server: FakeRealtimeServer, fresh_dsn: str, conn: asyncpg.Connection
) -> None:
    """Realtime refuses connections at start: the database timers and the backstop scan still
    ring and end the calls; the worker subscribes once the server is up."""
    await server.stop()
    async with (
        server.feed_from_postgres(fresh_dsn) as feed,
        running_realtime_worker(fresh_dsn, server, wait_subscribed=False) as worker,
    ):

        async def timeout_applied() -> bool:
            seconds = await conn.fetchval("select ring_timeout_seconds from orchestrator.settings")
            return bool(seconds == RING_TIMEOUT)

        await wait_for(timeout_applied)
        scene = Scene(conn, worker)
        down = await scene.pair("down")
        await scene.rang(down)
        await scene.answer(down[0])
        await scene.all_settled()  # the missed one ended at its deadline, from the database
        assert not worker.hooks.started.is_set() and not worker.source.healthy
        assert worker.rebuilds() >= 1 and server.connections == 0

        await server.start()
        await until(worker.hooks.started.is_set)
        events = worker.events()
        up = await scene.pair("up")
        await scene.rang(up)
        await scene.answer(up[0])
        await scene.all_settled()
        await caught_up(feed, scene)
        await until(lambda: worker.events() >= events + 3)
        await scene.check_outcomes()
    assert server.subscribed == 1


async def test_every_event_dropped_the_backstop_rings(
    server: FakeRealtimeServer, fresh_dsn: str, conn: asyncpg.Connection
) -> None:
    """Over quota for good: subscribed and healthy, yet no change ever arrives. The
    RECONCILE_INTERVAL_SECONDS backstop rings the calls; the timers end them."""
    server.drop_events = 1_000_000
    async with (
        server.feed_from_postgres(fresh_dsn) as feed,
        running_realtime_worker(fresh_dsn, server) as worker,
    ):
        scene = Scene(conn, worker)
        for phase in ("first", "second"):
            calls = await scene.pair(phase)
            await scene.rang(calls)
            await scene.answer(calls[0])
        await scene.all_settled()
        await caught_up(feed, scene)
        assert worker.source.healthy
        await scene.check_outcomes()
    assert worker.events() == 0 and server.changes_delivered == 0
    assert server.changes_dropped == feed.notifications == 6
    assert worker.rebuilds() == 0
