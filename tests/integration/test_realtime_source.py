"""RealtimeEventSource against the fake Realtime server, driving the real `realtime` client.

Every fault ends the same way: the source re-subscribes, emits Wakeup(None) (the worker
re-scans what the stream may have dropped), and delivers Wakeup(call_id) again. Nothing here
sleeps to synchronise: tests wait on conditions, with timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from realtime import SuccessSystemPayload
from structlog.testing import capture_logs

from orchestrator.adapters.realtime.source import RealtimeEventSource
from orchestrator.config import Settings
from orchestrator.metrics import Metrics
from orchestrator.ports import EventSource, Wakeup
from tests.fakes.realtime_changes import now_iso
from tests.fakes.realtime_server import FakeRealtimeServer
from tests.support.db import client_update, create_user, insert_call
from tests.support.wait import wait_for

KEY = "sb_secret_fake0123456789abcdefXYZ"  # must never show up in a log line
TIMERS: dict[str, Any] = {
    "backoff_base": 0.05, "backoff_max": 0.3, "stall_timeout": 0.8, "heartbeat_interval": 0.2,
    "check_interval": 0.05, "rejoin_timeout": 2.0, "join_timeout": 1, "client_max_retries": 2,
    "client_initial_backoff": 0.05, "close_timeout": 0.3, "stable_after": 0.5,
}  # fmt: skip


class Recorder:
    """The wake sink: synchronous, never raises, called on the event loop."""

    def __init__(self) -> None:
        self.wakeups: list[Wakeup] = []

    def __call__(self, wakeup: Wakeup) -> None:
        self.wakeups.append(wakeup)

    @property
    def rescans(self) -> int:
        return sum(1 for w in self.wakeups if w.call_id is None)

    @property
    def ids(self) -> list[uuid.UUID]:
        return [w.call_id for w in self.wakeups if w.call_id is not None]


async def until(condition: Callable[[], object], timeout: float = 8.0) -> None:
    async def check() -> object:
        return condition()

    await wait_for(check, timeout=timeout, interval=0.01)


def count(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def rebuilds(metrics: Metrics) -> float:
    return count(metrics, "orchestrator_realtime_rebuilds_total")


def make_source(server: FakeRealtimeServer, metrics: Metrics, **timers: Any) -> RealtimeEventSource:
    settings = Settings(
        event_source="supabase", supabase_url=server.url, supabase_service_role_key=KEY
    )
    return RealtimeEventSource(settings, metrics, **(TIMERS | timers))


@contextlib.asynccontextmanager
async def running(source: RealtimeEventSource, sink: Any = None) -> AsyncIterator[Recorder]:
    recorder = Recorder()
    task = asyncio.create_task(source.run(sink or recorder))
    try:
        yield recorder
        assert not task.done(), "run() must not return or raise"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()


async def subscribed(source: RealtimeEventSource, rec: Recorder, rescans: int) -> None:
    await until(lambda: rec.rescans >= rescans and source.healthy)
    assert rec.rescans == rescans


async def delivered(server: FakeRealtimeServer, rec: Recorder, type: str = "INSERT") -> uuid.UUID:
    call_id = uuid.uuid4()
    assert await server.emit_change({"id": str(call_id), "status": "ringing"}, type) == 1
    await until(lambda: call_id in rec.ids)
    return call_id


@pytest.fixture
async def server() -> AsyncIterator[FakeRealtimeServer]:
    async with FakeRealtimeServer(apikey=KEY) as srv:
        yield srv


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


async def test_subscribes_and_wakes_per_event(server: FakeRealtimeServer, metrics: Metrics) -> None:
    source = make_source(server, metrics)
    assert isinstance(source, EventSource) and source.name == "supabase"
    with capture_logs() as logs:
        async with running(source) as rec:
            await subscribed(source, rec, 1)
            assert server.last_join_bindings == [
                {"event": "INSERT", "schema": "public", "table": "calls"},
                {"event": "UPDATE", "schema": "public", "table": "calls"},
            ]
            inserted = await delivered(server, rec, "INSERT")
            updated = await delivered(server, rec, "UPDATE")
            assert rec.wakeups == [Wakeup(None), Wakeup(inserted), Wakeup(updated)]
            await until(lambda: server.heartbeats >= 1)
    assert count(metrics, "orchestrator_realtime_events_total") == 2
    assert count(metrics, "orchestrator_realtime_lag_seconds_count") == 2
    assert count(metrics, "orchestrator_reconciles_total", trigger="realtime_subscribed") == 1
    assert rebuilds(metrics) == 0 and server.rejected == 0
    events = [entry["event"] for entry in logs]
    assert {"realtime.connecting", "realtime.subscribed", "realtime.reconcile_requested"} <= set(
        events
    )
    assert KEY not in repr(logs)
    assert not source.healthy


@pytest.mark.parametrize("code", [1006, 1000])
async def test_dropped_socket_reconnects_and_rescans(
    server: FakeRealtimeServer, metrics: Metrics, code: int
) -> None:
    source = make_source(server, metrics)
    async with running(source) as rec:
        await subscribed(source, rec, 1)
        await server.drop_connections(code)
        # A change committed while nobody is subscribed is gone for good (at-most-once) ...
        lost = uuid.uuid4()
        if code == 1006:  # (a clean close takes a round trip: the client may be back already)
            assert await server.emit_change({"id": str(lost)}) == 0
        await subscribed(source, rec, 2)  # ... which is why every rejoin asks for a re-scan
        await delivered(server, rec)
        assert lost not in rec.ids
    assert server.connections == 2 and rebuilds(metrics) == 0  # the library's own reconnect
    assert count(metrics, "orchestrator_reconnects_total", dependency="realtime") == 1


async def test_outage_longer_than_the_client_retry_budget(
    server: FakeRealtimeServer, metrics: Metrics
) -> None:
    source = make_source(server, metrics)
    with capture_logs() as logs:
        async with running(source) as rec:
            await subscribed(source, rec, 1)
            await server.stop()
            await until(lambda: rebuilds(metrics) >= 2)  # the reader gave up, then a rebuild
            assert not source.healthy
            await server.start()
            await subscribed(source, rec, 2)
            await delivered(server, rec)
    reasons = [e.get("reason", "") for e in logs if e["event"] == "realtime.rebuild"]
    assert reasons[0] == "reader_ended:ConnectionRefusedError"
    assert "connect_failed" in reasons[1:]


async def test_starts_while_realtime_is_down(server: FakeRealtimeServer, metrics: Metrics) -> None:
    await server.stop()
    source = make_source(server, metrics)
    async with running(source) as rec:
        await until(lambda: rebuilds(metrics) >= 2)  # refused, retried, run() still running
        assert not source.healthy and rec.wakeups == []
        server.reject_status = 503  # up, but refusing handshakes
        await server.start()
        await until(lambda: server.rejected >= 1)
        assert not source.healthy
        server.reject_status = None
        await subscribed(source, rec, 1)
        await delivered(server, rec)


async def test_phx_close_rebuilds_the_client(server: FakeRealtimeServer, metrics: Metrics) -> None:
    source = make_source(server, metrics)
    with capture_logs() as logs:
        async with running(source) as rec:
            await subscribed(source, rec, 1)
            await server.close_channels()
            await subscribed(source, rec, 2)
            await delivered(server, rec)
    assert rebuilds(metrics) == 1 and server.connections == 2
    assert [e["reason"] for e in logs if e["event"] == "realtime.rebuild"] == ["channel_closed"]


@pytest.mark.parametrize("fault", ["phx_error", "system_error"])
async def test_errored_channel_rejoins(
    server: FakeRealtimeServer, metrics: Metrics, fault: str
) -> None:
    source = make_source(server, metrics)
    async with running(source) as rec:
        await subscribed(source, rec, 1)
        if fault == "phx_error":
            await server.error_channels()
        else:
            await server.system_error()
        await until(lambda: not source.healthy)
        await subscribed(source, rec, 2)  # the library rejoins after 1 s on the same socket
        await delivered(server, rec)
    assert server.joins == 2 and server.connections == 1 and rebuilds(metrics) == 0


async def test_errors_past_rejoin_timeout_rebuild(
    server: FakeRealtimeServer, metrics: Metrics
) -> None:
    server.subscribe_errors = 3  # every rejoin fails too: the library would retry forever
    source = make_source(server, metrics, rejoin_timeout=1.5)
    with capture_logs() as logs:
        async with running(source) as rec:
            await subscribed(source, rec, 1)
            await delivered(server, rec)
    reasons = [e["reason"] for e in logs if e["event"] == "realtime.rebuild"]
    assert reasons and set(reasons) == {"not_subscribed"}


async def test_half_open_connection_is_detected(
    server: FakeRealtimeServer, metrics: Metrics
) -> None:
    source = make_source(server, metrics)
    with capture_logs() as logs:
        async with running(source) as rec:
            await subscribed(source, rec, 1)
            await server.freeze()  # the socket stays up; nothing is read or answered
            await subscribed(source, rec, 2)
            await delivered(server, rec)
    assert [e["reason"] for e in logs if e["event"] == "realtime.rebuild"] == ["stalled"]
    assert server.connections == 2


async def test_join_never_answered(server: FakeRealtimeServer, metrics: Metrics) -> None:
    server.ignore_joins = 2
    source = make_source(server, metrics, rejoin_timeout=1.5)
    async with running(source) as rec:
        await subscribed(source, rec, 1)
        await delivered(server, rec)
    assert server.joins >= 3


async def test_reader_killed_by_a_frame(server: FakeRealtimeServer, metrics: Metrics) -> None:
    source = make_source(server, metrics)
    with capture_logs() as logs:
        async with running(source) as rec:
            await subscribed(source, rec, 1)
            await server.kill_reader()  # the socket stays open; only our watchdog can tell
            await subscribed(source, rec, 2)
            await delivered(server, rec)
    reasons = [e["reason"] for e in logs if e["event"] == "realtime.rebuild"]
    assert reasons == ["reader_ended:KeyError"]


MALFORMED: list[tuple[dict[str, Any], str]] = [
    ({"record": None}, "no record"),
    ({"record": {"status": "ringing"}}, "record has no string id"),
    ({"record": {"id": 42}}, "record has no string id"),
    ({"record": {"id": "not-a-uuid", "token": "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0c2VjcmV0.sig"}},
     "record id is not a uuid"),
    ({"table": "other"}, "change of another table"),
]  # fmt: skip


async def test_malformed_payloads_rescan_and_keep_the_stream(
    server: FakeRealtimeServer, metrics: Metrics
) -> None:
    source = make_source(server, metrics)
    base = {"schema": "public", "table": "calls", "commit_timestamp": "2026-01-01T00:00:00Z",
            "type": "UPDATE", "errors": None, "columns": []}  # fmt: skip
    with capture_logs() as logs:
        async with running(source) as rec:
            await subscribed(source, rec, 1)
            for n, (fields, _) in enumerate(MALFORMED, start=2):
                data = {k: v for k, v in (base | fields).items()}
                await server.emit_data(data, "UPDATE", table="calls")
                await until(lambda n=n: rec.rescans == n)  # type: ignore[misc]
            no_record = {k: v for k, v in base.items()}
            await server.emit_data(no_record, "UPDATE")  # "record" absent altogether
            await until(lambda: rec.rescans == len(MALFORMED) + 2)
            # Frames the client itself rejects never reach us, and its reader survives them.
            await server.emit_raw("postgres_changes", {"data": {"type": "INSERT"}, "ids": [1]})
            await server.emit_raw("postgres_changes", "garbage")
            await server.emit_data(base | {"record": "not an object"}, "UPDATE")
            await delivered(server, rec)
            assert source.healthy
    problems = [e["problem"] for e in logs if e["event"] == "realtime.malformed_event"]
    assert problems == [p for _, p in MALFORMED] + ["no record"]
    assert "c2VjcmV0c2VjcmV0" not in repr(logs) and "not-a-uuid" not in repr(logs)
    assert count(metrics, "orchestrator_reconciles_total", trigger="realtime_malformed") == 6
    assert rebuilds(metrics) == 0


async def test_events_dropped_by_the_server(server: FakeRealtimeServer, metrics: Metrics) -> None:
    """Over quota, Realtime skips changes silently: the source cannot know, and stays healthy;
    the worker's RECONCILE_INTERVAL_SECONDS backstop is what finds those calls."""
    source = make_source(server, metrics)
    async with running(source) as rec:
        await subscribed(source, rec, 1)
        server.drop_events = 3
        for _ in range(3):
            assert await server.emit_change({"id": str(uuid.uuid4())}) == 0
        kept = await delivered(server, rec)
        assert rec.ids == [kept] and rec.rescans == 1 and source.healthy
    assert server.changes_dropped == 3 and rebuilds(metrics) == 0


async def test_late_callbacks_of_a_torn_down_client_are_ignored(
    server: FakeRealtimeServer, metrics: Metrics
) -> None:
    source = make_source(server, metrics)
    async with running(source) as rec:
        await subscribed(source, rec, 1)
        old = source._live
        assert old is not None
        binding = old.channel.postgres_changes_callbacks[0]
        await server.close_channels()
        await subscribed(source, rec, 2)
        late = uuid.uuid4()
        # The torn-down library objects deliver a change and a "Subscribed" once more.
        binding({"data": {"schema": "public", "table": "calls", "type": "INSERT",
                          "commit_timestamp": "x", "errors": None, "columns": [],
                          "record": {"id": str(late)}}, "ids": [binding.id]})  # fmt: skip
        again = SuccessSystemPayload(
            channel="c", extension="postgres_changes", message="Subscribed to PostgreSQL",
            status="ok",
        )  # fmt: skip
        for system in old.channel.system_callbacks:
            system(again)
        fresh = await delivered(server, rec)  # queued after the late ones, if any had counted
        assert late not in rec.ids and rec.ids[-1] == fresh and rec.rescans == 2


async def test_a_raising_sink_does_not_stop_the_stream(
    server: FakeRealtimeServer, metrics: Metrics
) -> None:
    rec = Recorder()

    def sink(wakeup: Wakeup) -> None:
        rec(wakeup)
        raise RuntimeError("sink bug")

    source = make_source(server, metrics)
    async with running(source, sink):
        await subscribed(source, rec, 1)
        await delivered(server, rec)
        await delivered(server, rec)


@pytest.mark.postgres
async def test_fed_from_postgres(
    server: FakeRealtimeServer, metrics: Metrics, fresh_dsn: str
) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    source = make_source(server, metrics)
    try:
        async with server.feed_from_postgres(fresh_dsn) as feed, running(source) as rec:
            await subscribed(source, rec, 1)
            caller, callee = await create_user(conn), await create_user(conn)
            call_id = await insert_call(conn, caller, callee)  # the schema NOTIFYs client writes
            await until(lambda: call_id in rec.ids)
            await client_update(conn, callee, call_id, "accepted")
            await until(lambda: rec.ids.count(call_id) == 2)
            assert feed.forwarded == 2 and feed.errors == 0
    finally:
        await conn.close()
    (first, row1), (second, row2) = list(server.sent)
    assert (first, row1["status"], row1["version"]) == ("INSERT", "ringing", 1)
    assert (second, row2["status"], row2["version"]) == ("UPDATE", "accepted", 2)
    assert row1["id"] == str(call_id) and isinstance(row1["created_at"], str)


async def test_soak_flat_memory_and_no_task_leak(server: FakeRealtimeServer) -> None:
    """Thousands of events across rebuilds and reconnects: memory and task count stay flat."""
    metrics, seen = Metrics(), Recorder()
    state = {"events": 0}

    def sink(wakeup: Wakeup) -> None:  # counts only: a list of every wake-up would grow
        if wakeup.call_id is None:
            seen.wakeups.append(wakeup)
        else:
            state["events"] += 1

    source = make_source(server, metrics)
    rounds, per_round = 5, 1500
    # pydantic-core caches up to 16,384 short strings it parses (bounded, about 1.3 MB here):
    # a distinct commit_timestamp per event fills that cache and looks like growth for ~50k
    # events. A small pool keeps this measurement about leaks in our code and the client's.
    stamps = [f"{now_iso()[:-5]}{i:03d}Z" for i in range(64)]

    async def one_round(n: int) -> None:
        target = state["events"] + per_round
        for i in range(per_round):
            record = {"id": str(uuid.uuid4()), "status": "ringing"}
            await server.emit_change(record, commit_timestamp=stamps[i % len(stamps)])
        await until(lambda: state["events"] >= target, timeout=60)
        # Alternate the two recovery paths: a library reconnect and a full rebuild.
        await (server.drop_connections(1006) if n % 2 else server.close_channels())
        await until(lambda: seen.rescans >= n + 2 and source.healthy)

    tasks_before = len(asyncio.all_tasks())
    tracemalloc.start()
    try:
        async with running(source, sink):
            await until(lambda: seen.rescans == 1 and source.healthy)
            await one_round(0)  # warm-up: caches, pydantic validators, histogram buckets
            gc.collect()
            memory_start, tasks_start = tracemalloc.get_traced_memory()[0], len(asyncio.all_tasks())
            for n in range(1, rounds):
                await one_round(n)
            gc.collect()
            memory_end, tasks_end = tracemalloc.get_traced_memory()[0], len(asyncio.all_tasks())
    finally:
        tracemalloc.stop()
    await until(lambda: len(asyncio.all_tasks()) <= tasks_before)
    growth = memory_end - memory_start
    print(f"soak: {rounds * per_round} events, memory {memory_start} -> {memory_end} "
          f"({growth:+d} B), tasks {tasks_start} -> {tasks_end}, "
          f"rebuilds {rebuilds(metrics):.0f}")  # fmt: skip
    assert state["events"] == rounds * per_round
    assert tasks_end == tasks_start
    assert growth < 256 * 1024, f"memory grew by {growth} bytes"


async def test_a_backlog_beyond_the_queue_limit_collapses_into_a_rescan(
    server: FakeRealtimeServer, metrics: Metrics
) -> None:
    source = make_source(server, metrics, queue_limit=4)
    async with running(source) as rec:
        await subscribed(source, rec, 1)
        emitted = [uuid.uuid4() for _ in range(300)]
        for call_id in emitted:  # one burst: the reader runs far ahead of the consumer
            await server.emit_change({"id": str(call_id)})
        await until(lambda: rec.rescans >= 2)  # what did not fit became a re-scan
        got = set(rec.ids)
        assert got < set(emitted)
        overflows = count(metrics, "orchestrator_reconciles_total", trigger="realtime_overflow")
        assert overflows >= 1 and rec.rescans == 1 + overflows and source.healthy
        print(f"backlog: {len(got)} of {len(emitted)} queued, {overflows:.0f} overflow re-scans")
        probes: list[uuid.UUID] = []

        async def stream_flows_again() -> bool:
            if any(p in rec.ids for p in probes):
                return True
            probes.append(uuid.uuid4())
            await server.emit_change({"id": str(probes[-1])})
            return False

        await wait_for(stream_flows_again, timeout=8, interval=0.05)
    assert rebuilds(metrics) == 0
