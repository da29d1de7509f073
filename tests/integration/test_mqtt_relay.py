"""The MQTT relay against a private Mosquitto, the real database and the real worker.

Each test starts its own broker (tests/support/mosquitto.py) and its own database. The relay
runs in-process through `run_relay` with short intervals; subscribers are real aiomqtt clients.
"""

from __future__ import annotations

import asyncio
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import pytest

from orchestrator import operator_tools as operator
from orchestrator.adapters.mqtt.relay import RelayOptions, run_relay
from orchestrator.adapters.postgres import token_store
from orchestrator.adapters.postgres.pool import create_pool
from orchestrator.demo_mqtt import follow_mqtt
from orchestrator.domain.push import Permanent, rfc3339
from orchestrator.metrics import Metrics
from tests.support.db import add_device, as_user, client_update, create_user, insert_call
from tests.support.mosquitto import Mosquitto, Received, Subscriber
from tests.support.tcp_proxy import TcpProxy, proxied
from tests.support.wait import wait_for
from tests.support.worker import running_worker, worker_settings

pytestmark = [pytest.mark.postgres, pytest.mark.mosquitto]

FAST = RelayOptions(
    poll_interval=0.05,
    lock_retry=0.1,
    backoff_min=0.05,
    backoff_max=0.5,
    lag_interval=0.1,
    keepalive=5,
    publish_timeout=3,
)
PAYLOAD_KEYS = {"event_id", "call_id", "event", "status", "end_reason", "version", "occurred_at"}
STATUS = {"call_created", "call_accepted", "call_ended"}
CALLEE_ONLY = {"push_sent", "push_failed", "device_pruned"}
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

DEAD_TOKEN = "dead-fcm-token-0123456789abcdefghij"  # FCM format: 32+ characters


@dataclass
class Relay:
    metrics: Metrics
    stop: asyncio.Event
    task: asyncio.Task[None]

    def lag(self) -> float:
        return self._sample("orchestrator_mqtt_relay_lag_seconds", {})

    def reconnects(self) -> float:
        return self._sample("orchestrator_reconnects_total", {"dependency": "mqtt"})

    def _sample(self, name: str, labels: dict[str, str]) -> float:
        return float(self.metrics.registry.get_sample_value(name, labels) or 0.0)


@asynccontextmanager
async def relay(dsn: str, url: str, worker_id: str = "relay-a") -> AsyncIterator[Relay]:
    settings = worker_settings(dsn, MQTT_URL=url, WORKER_ID=worker_id)
    pool = await create_pool(dsn, size=2, name="test-relay")
    metrics, stop = Metrics(), asyncio.Event()
    task = asyncio.create_task(run_relay(settings, pool, metrics, stop, options=FAST))
    try:
        yield Relay(metrics, stop, task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await pool.close()


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    server = Mosquitto(tmp_path / "mosquitto")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def conn(fresh_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(fresh_dsn)
    yield connection
    await connection.close()


def users_topic(user: uuid.UUID) -> str:
    return f"v1/users/{user}/calls"


# The oracle is the database: who can SELECT each row through RLS, as PostgREST would let them.
VISIBLE: dict[int, set[uuid.UUID]] = {}


async def audit(conn: asyncpg.Connection, call_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "select a.*, c.caller_id, c.callee_id from public.call_audit a"
        " join public.calls c on c.id = a.call_id where a.call_id = any($1) order by a.id",
        call_ids,
    )
    people = {r[k] for r in rows for k in ("caller_id", "callee_id", "actor_id") if r[k]}
    for row in rows:
        VISIBLE[row["id"]] = set()
    for user in people:
        async with as_user(conn, user):
            seen = await conn.fetch(
                "select id from public.call_audit where call_id = any($1)", call_ids
            )
        for found in seen:
            if found["id"] in VISIBLE:  # rows committed after the first read are not in `rows`
                VISIBLE[found["id"]].add(user)
    return rows


def readers(row: asyncpg.Record) -> set[uuid.UUID]:
    """Who may read this row: what RLS let each participant select (see `audit`)."""
    return VISIBLE[row["id"]]


def expected_ids(rows: list[asyncpg.Record], user: uuid.UUID) -> list[int]:
    return [r["id"] for r in rows if user in readers(r)]


async def settled(conn: asyncpg.Connection) -> bool:
    """The worker has nothing left to send (so the audit is complete)."""
    return bool(
        await conn.fetchval(
            "select not exists (select 1 from public.push_deliveries where status = 'pending')"
        )
    )


def first_seen(ids: list[int]) -> list[int]:
    return list(dict.fromkeys(ids))


def by_call(messages: list[Received]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for message in messages:
        found.setdefault(message.body["call_id"], []).append(message.body["event_id"])
    return found


async def test_every_event_reaches_exactly_the_users_who_may_read_it(
    fresh_dsn: str, conn: asyncpg.Connection, broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    caller, callee = await create_user(conn), await create_user(conn)
    good = await add_device(conn, callee, "android")
    dead = await add_device(conn, callee, "android", token=DEAD_TOKEN)
    tokens = await conn.fetch("select token from public.push_devices where user_id = $1", callee)
    async with (
        Subscriber(broker.port, [users_topic(caller)]) as caller_sub,
        Subscriber(broker.port, [users_topic(callee)]) as callee_sub,
        Subscriber(broker.port, ["v1/#"]) as everything,
        relay(fresh_dsn, broker.url()),
        running_worker(fresh_dsn) as worker,
    ):
        worker.provider.script(DEAD_TOKEN, Permanent("UNREGISTERED", prune=True))
        call_id = await insert_call(conn, caller, callee)

        async def rang() -> bool:
            events = [r["event"] for r in await audit(conn, [call_id])]
            return "push_sent" in events and "device_pruned" in events

        await wait_for(rang)
        await client_update(conn, callee, call_id, "accepted")
        pool = await create_pool(fresh_dsn, size=1)
        for user in (caller, callee):
            grant = await token_store.issue(
                pool,
                call_id=call_id,
                user_id=user,
                session_id=None,
                check_session=False,
                ttl=300,
                max_call_seconds=14400,
                token_version="007",
                time_limit=5,
            )
            assert grant.outcome is token_store.Outcome.ISSUED
        await pool.close()
        assert await operator.end(conn, call_id, "failed") == 0
        await wait_for(lambda: settled(conn))
        rows = await audit(conn, [call_id])

        async def all_arrived() -> bool:
            return caller_sub.event_ids(users_topic(caller)) == expected_ids(
                rows, caller
            ) and callee_sub.event_ids(users_topic(callee)) == expected_ids(rows, callee)

        await wait_for(all_arrived)
        state = f"v1/calls/{call_id}/state"
        await wait_for(lambda: _has_version(everything, state, 3))

    events = {r["event"] for r in rows}
    assert events == STATUS | CALLEE_ONLY | {"token_issued", "operator_action"}
    # One rule on both paths: operator_action is hidden from both participants through RLS
    # (the oracle) and therefore through MQTT, on user topics and the retained state alike.
    (action,) = [r for r in rows if r["event"] == "operator_action"]
    assert readers(action) == set()
    assert all(b"operator_action" not in m.payload for m in everything.received)
    tokens_of = {r["id"]: r["actor_id"] for r in rows if r["event"] == "token_issued"}
    assert {tokens_of[i] for i in caller_sub.event_ids(users_topic(caller)) if i in tokens_of} == {
        caller
    }
    versions = {"call_created": 1, "call_accepted": 2, "call_ended": 3}
    by_id = {r["id"]: r for r in rows}
    secrets = [str(good), str(dead), *(t["token"] for t in tokens), "UNREGISTERED"]
    for message in caller_sub.received + callee_sub.received:
        body = message.body
        row = by_id[body["event_id"]]
        assert set(body) == PAYLOAD_KEYS and not message.retain
        assert body["call_id"] == str(call_id) and body["event"] == row["event"]
        assert RFC3339_MS.match(body["occurred_at"])
        assert body["occurred_at"] == rfc3339(row["occurred_at"].astimezone(UTC))
        if row["event"] in STATUS:
            assert (body["status"], body["end_reason"], body["version"]) == (
                row["to_status"],
                row["end_reason"],
                versions[row["event"]],
            )
        else:  # side-effect events carry the call's values when published
            assert 1 <= body["version"] <= 3
        assert not any(secret in message.payload.decode() for secret in secrets)
    states = [m.body["version"] for m in everything.on(state)]
    assert states == sorted(states), "the retained state went backwards"
    async with Subscriber(broker.port, [state], persistent=False) as late:
        await until(lambda: bool(late.on(state)))
        latest = late.on(state)[-1]
        assert latest.retain and latest.body["version"] == 3
        assert (latest.body["status"], latest.body["end_reason"]) == ("ended", "failed")
    status = everything.on("v1/workers/relay-a/status")
    assert [m.payload for m in status][:1] == [b"online"]
    assert DEAD_TOKEN not in capsys.readouterr().out


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """wait_for with a plain (synchronous) condition."""

    async def check() -> bool:
        return bool(condition())

    await wait_for(check, timeout)


async def _has_version(subscriber: Subscriber, topic: str, version: int) -> bool:
    return any(m.body["version"] == version for m in subscriber.on(topic))


async def _pair(conn: asyncpg.Connection) -> tuple[uuid.UUID, uuid.UUID]:
    caller, callee = await create_user(conn), await create_user(conn)
    await add_device(conn, callee, "android")
    return caller, callee


async def _one_call(conn: asyncpg.Connection, pair: tuple[uuid.UUID, uuid.UUID]) -> uuid.UUID:
    """A client-driven call: ring, accept, hang up (the worker adds its pushes)."""
    caller, callee = pair
    call_id = await insert_call(conn, caller, callee)
    await client_update(conn, callee, call_id, "accepted")
    await client_update(conn, caller, call_id, "ended", "completed")
    return call_id


def assert_in_order_per_call(messages: list[Received]) -> None:
    for call_id, ids in by_call(messages).items():
        assert first_seen(ids) == sorted(first_seen(ids)), f"call {call_id} out of order: {ids}"


async def test_a_broker_restart_mid_run_loses_nothing(
    fresh_dsn: str, conn: asyncpg.Connection, broker: Mosquitto
) -> None:
    pairs = [await _pair(conn) for _ in range(24)]
    calls: list[uuid.UUID] = []
    async with (
        Subscriber(broker.port, ["v1/users/+/calls"]) as users,
        relay(fresh_dsn, broker.url()) as relay_a,
        running_worker(fresh_dsn),
    ):
        for pair in pairs[:8]:
            calls.append(await _one_call(conn, pair))
        await until(lambda: len(users.received) > 0)
        await broker.stop()  # in the middle of the run: the relay is publishing now
        for pair in pairs[8:16]:
            calls.append(await _one_call(conn, pair))
        await until(lambda: relay_a.lag() > 0)  # nothing leaves while it is down
        await broker.start()
        for pair in pairs[16:]:
            calls.append(await _one_call(conn, pair))
        await wait_for(lambda: settled(conn))
        rows = await audit(conn, calls)
        wanted = {(users_topic(u), r["id"]) for r in rows for u in readers(r)}

        async def everything_arrived() -> bool:
            return wanted <= {(m.topic, m.body["event_id"]) for m in users.received}

        await wait_for(everything_arrived, timeout=30)
        await until(lambda: relay_a.lag() == 0)
        assert relay_a.reconnects() >= 1
    for user in {u for r in rows for u in readers(r)}:
        assert_in_order_per_call(users.on(users_topic(user)))


async def test_a_new_relay_continues_from_the_saved_cursor(
    fresh_dsn: str, conn: asyncpg.Connection, broker: Mosquitto
) -> None:
    pairs = [await _pair(conn) for _ in range(6)]
    async with Subscriber(broker.port, ["v1/users/+/calls"]) as users:
        async with relay(fresh_dsn, broker.url(), "relay-a"):
            first = [await _one_call(conn, pair) for pair in pairs[:3]]
            rows = await audit(conn, first)
            await until(lambda: len(users.received) == sum(len(readers(r)) for r in rows))
        later = [await _one_call(conn, pair) for pair in pairs[3:]]  # no relay running
        async with relay(fresh_dsn, broker.url(), "relay-b"):
            rows = await audit(conn, first + later)
            wanted = [(users_topic(u), r["id"]) for r in rows for u in sorted(readers(r))]
            await until(lambda: len(users.received) >= len(wanted))
            assert sorted((m.topic, m.body["event_id"]) for m in users.received) == sorted(wanted)
        cursor = await conn.fetchrow("select * from orchestrator.relay_cursor")
        assert cursor["updated_by"] == "relay-b"


async def _visible_row(conn: asyncpg.Connection, call_id: uuid.UUID) -> int:
    """An audit row the caller may read (a token_issued of theirs), written directly."""
    row_id: int = await conn.fetchval(
        "insert into public.call_audit (call_id, actor_id, actor, event)"
        " select id, caller_id, 'caller', 'token_issued' from public.calls where id = $1"
        " returning id",
        call_id,
    )
    return row_id


async def test_rows_that_commit_out_of_order_are_not_skipped(
    fresh_dsn: str, conn: asyncpg.Connection, broker: Mosquitto
) -> None:
    caller, callee = await create_user(conn), await create_user(conn)
    call_id = await insert_call(conn, caller, callee)
    other = await asyncpg.connect(fresh_dsn)
    async with (
        Subscriber(broker.port, [users_topic(caller)]) as sub,
        relay(fresh_dsn, broker.url()) as running,
    ):

        def seen() -> list[int]:
            return sub.event_ids(users_topic(caller))

        await until(lambda: len(seen()) == 1)  # call_created

        async def held_back(low: int, high: int, commit_low: Any) -> None:
            """`high` is committed, `low` is not: neither goes out until `low` commits."""
            await until(lambda: running.lag() >= 0.3)  # the relay has had `high` for a while
            assert high not in seen() and low not in seen()
            await commit_low()
            await until(lambda: high in seen())
            assert seen()[-2:] == [low, high]  # id order, nothing skipped

        # The lower id commits last.
        late = other.transaction()
        await late.start()
        low = await _visible_row(other, call_id)
        high = await _visible_row(conn, call_id)
        await held_back(low, high, late.commit)

        # The older transaction (lower xid) draws the higher id and commits first.
        older = conn.transaction()
        await older.start()
        await conn.fetchval("select pg_current_xact_id()")
        newer = other.transaction()
        await newer.start()
        low = await _visible_row(other, call_id)
        high = await _visible_row(conn, call_id)
        await older.commit()
        await held_back(low, high, newer.commit)

        # A rolled-back id leaves a gap, not a stall.
        rolled = other.transaction()
        await rolled.start()
        await _visible_row(other, call_id)
        await rolled.rollback()
        last = await _visible_row(conn, call_id)
        await until(lambda: last in seen())
        assert seen() == [r["id"] for r in await audit(conn, [call_id])]
    await other.close()


async def _holder(conn: asyncpg.Connection) -> str | None:
    """The application_name of the session holding the relay's advisory lock."""
    holder: str | None = await conn.fetchval(
        "select a.application_name from pg_locks l join pg_stat_activity a on a.pid = l.pid"
        " where l.locktype = 'advisory' and l.classid = 7339 and l.objid = 1 and l.granted"
        # this test's database only: other tests' relays (parallel runs) hold their own
        " and l.database = (select oid from pg_database where datname = current_database())"
    )
    return holder


RELAY_PROCESS = """
import asyncio, sys
from orchestrator.adapters.mqtt.relay import RelayOptions, run_relay
from orchestrator.adapters.postgres.pool import create_pool
from orchestrator.config import Settings
from orchestrator.metrics import Metrics

async def main() -> None:
    settings = Settings.from_env({"DATABASE_URL": sys.argv[1], "MQTT_URL": sys.argv[2],
                                  "WORKER_ID": "relay-proc"})
    pool = await create_pool(sys.argv[1], size=2)
    await run_relay(settings, pool, Metrics(), asyncio.Event(),
                    options=RelayOptions(poll_interval=0.05, lock_retry=0.1))

asyncio.run(main())
"""


async def test_one_relay_publishes_and_another_takes_over_when_it_dies(
    fresh_dsn: str, conn: asyncpg.Connection, broker: Mosquitto
) -> None:
    pairs = [await _pair(conn) for _ in range(4)]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RELAY_PROCESS, fresh_dsn, broker.url()
    )
    try:
        async with Subscriber(broker.port, ["v1/#"]) as sub:
            status = "v1/workers/relay-proc/status"
            await until(lambda: b"online" in [m.payload for m in sub.on(status)])
            await wait_for(lambda: _holder(conn))
            assert await _holder(conn) == "orchestrator-relay:relay-proc"
            async with relay(fresh_dsn, broker.url(), "relay-b"):
                await until(lambda: bool(sub.on("v1/workers/relay-b/status")))
                calls = [await _one_call(conn, pair) for pair in pairs[:2]]
                rows = await audit(conn, calls)
                wanted = sorted((users_topic(u), r["id"]) for r in rows for u in readers(r))

                def got() -> list[tuple[str, int]]:
                    return sorted(
                        (m.topic, m.body["event_id"]) for m in sub.received if "/users/" in m.topic
                    )

                await until(lambda: got() == wanted)  # once each: one relay
                assert await _holder(conn) == "orchestrator-relay:relay-proc"

                process.kill()  # a crash: no goodbye, the will and the lock's end speak for it
                await process.wait()
                await until(lambda: sub.on(status)[-1].payload == b"offline")

                async def taken_over() -> bool:
                    return await _holder(conn) == "orchestrator-relay:relay-b"

                await wait_for(taken_over)
                calls += [await _one_call(conn, pair) for pair in pairs[2:]]
                rows = await audit(conn, calls)
                wanted = sorted({(users_topic(u), r["id"]) for r in rows for u in readers(r)})
                await until(lambda: sorted(set(got())) == wanted)
            assert sub.on("v1/workers/relay-b/status")[-1].payload == b"offline"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_deploy_acl_keeps_users_apart_and_service_reads_all(
    fresh_dsn: str, conn: asyncpg.Connection, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    alice, bob = await create_user(conn), await create_user(conn)
    await add_device(conn, bob, "android")
    secrets = {"orchestrator": uuid.uuid4().hex, "service": uuid.uuid4().hex}
    secrets |= {str(alice): uuid.uuid4().hex, str(bob): uuid.uuid4().hex}
    server = Mosquitto.with_deploy_config(tmp_path / "acl-broker", secrets)
    await server.start()
    login = {name: (name, pw) for name, pw in secrets.items()}
    try:
        async with (
            Subscriber(server.port, ["v1/#", users_topic(bob)], *login[str(alice)]) as as_alice,
            Subscriber(server.port, [users_topic(bob)], *login[str(bob)]) as as_bob,
            Subscriber(server.port, ["v1/#"], *login["service"]) as service,
            relay(fresh_dsn, server.url("orchestrator", secrets["orchestrator"])),
            running_worker(fresh_dsn),
        ):
            call_id = await insert_call(conn, alice, bob)

            async def rang() -> bool:  # push_sent: bob's only
                return "push_sent" in {r["event"] for r in await audit(conn, [call_id])}

            await wait_for(rang)
            await client_update(conn, bob, call_id, "ended", "declined")
            await wait_for(lambda: settled(conn))
            rows = await audit(conn, [call_id])
            await until(lambda: as_bob.event_ids(users_topic(bob)) == expected_ids(rows, bob))
            await until(lambda: as_alice.event_ids(users_topic(alice)) == expected_ids(rows, alice))
            state = f"v1/calls/{call_id}/state"
            await until(lambda: bool(service.on(state)))
            # A message on bob's topic reaches bob and never alice; alice cannot write to it.
            async with _client(server.port, *login["service"]) as client:
                await client.publish(users_topic(bob), b'{"probe": 1}', qos=1)
            async with _client(server.port, *login[str(alice)]) as client:
                await client.publish(users_topic(bob), b'{"forged": 1}', qos=1)
            await until(lambda: bool(_raw(as_bob, b"probe")))
            await until(lambda: bool(_raw(service, b"probe")))
            await asyncio.sleep(1.0)  # a bounded wait, only to prove an absence
            assert not _raw(as_alice, b"probe") and not _raw(as_bob, b"forged")
            assert {m.topic for m in as_alice.received} == {users_topic(alice)}
            assert service.on(users_topic(bob)) and service.on(users_topic(alice))
    finally:
        await server.stop()
    output = capfd.readouterr()
    assert not any(pw in output.out + output.err for pw in secrets.values())


def _raw(subscriber: Subscriber, marker: bytes) -> list[Received]:
    return [m for m in subscriber.received if marker in m.payload]


def _client(port: int, username: str, password: str) -> aiomqtt.Client:
    """A short-lived plain client (MQTT 3.1.1: a refused publish is dropped silently)."""
    return aiomqtt.Client("127.0.0.1", port, username=username, password=password)


PARTIAL_ACL = """
user orchestrator
topic write v1/#
user partial
topic write v1/workers/#
topic write v1/calls/#
user service
topic readwrite #
"""


async def test_a_refused_publish_is_retried_not_skipped(
    fresh_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    caller, callee = await create_user(conn), await create_user(conn)
    secrets = {"orchestrator": "good-secret", "service": "service-secret", "partial": "p"}
    server = Mosquitto.with_deploy_config(tmp_path / "acl-broker", secrets, PARTIAL_ACL)
    await server.start()
    try:
        async with Subscriber(server.port, ["v1/#"], "service", "service-secret") as service:
            call_id = await insert_call(conn, caller, callee)
            before = await conn.fetchval("select last_id from orchestrator.relay_cursor")
            # `partial` may write its status and call states, not user topics: the broker
            # answers those publishes with a failure reason code in the PUBACK.
            async with relay(fresh_dsn, server.url("partial", "p")) as refused:
                await until(lambda: refused.reconnects() >= 2)
            after = await conn.fetchval("select last_id from orchestrator.relay_cursor")
            assert after == before
            assert service.on(f"v1/calls/{call_id}/state")  # the open call's state got through
            assert not service.on(users_topic(caller)) and not service.on(users_topic(callee))
            async with relay(fresh_dsn, server.url("orchestrator", "good-secret")):
                await until(lambda: bool(service.on(users_topic(callee))))
            assert service.event_ids(users_topic(caller)) == [
                r["id"] for r in await audit(conn, [call_id])
            ]
    finally:
        await server.stop()


async def test_the_demo_follower_prints_the_stream(
    fresh_dsn: str, conn: asyncpg.Connection, broker: Mosquitto
) -> None:
    lines: list[str] = []
    settings = worker_settings(fresh_dsn, MQTT_URL=broker.url(), WORKER_ID="demo")
    follower = asyncio.create_task(follow_mqtt(settings, lines.append))
    try:
        await until(lambda: any("following v1/#" in line for line in lines))
        async with relay(fresh_dsn, broker.url()):
            call_id = await insert_call(conn, *(await _pair(conn)))
            await until(lambda: any("call_created" in line for line in lines))
    finally:
        follower.cancel()
    assert any(f"calls/{call_id}/state" in line and "ringing" in line for line in lines)
    assert any("workers/relay-a/status" in line and "online" in line for line in lines)


async def test_a_database_outage_loses_nothing(
    fresh_dsn: str, conn: asyncpg.Connection, broker: Mosquitto
) -> None:
    proxy = TcpProxy(proxied(fresh_dsn, 0)[1])
    await proxy.start()
    through_proxy, _ = proxied(fresh_dsn, proxy.port)
    caller, callee = await create_user(conn), await create_user(conn)
    call_id = await insert_call(conn, caller, callee)
    async with (
        Subscriber(broker.port, [users_topic(caller)]) as sub,
        relay(through_proxy, broker.url()),
    ):
        ids = [await _visible_row(conn, call_id) for _ in range(3)]
        await until(lambda: set(ids) <= set(sub.event_ids(users_topic(caller))))
        await proxy.stop()  # the database vanishes for the relay (lock and cursor with it)
        ids += [await _visible_row(conn, call_id) for _ in range(3)]
        proxy = TcpProxy(proxied(fresh_dsn, 0)[1])
        proxy.port = int(through_proxy.rsplit(":", 1)[1].split("/")[0])
        await proxy.start()  # back on the same port
        ids += [await _visible_row(conn, call_id) for _ in range(3)]
        every = [r["id"] for r in await audit(conn, [call_id])]
        await until(lambda: set(every) <= set(sub.event_ids(users_topic(caller))), timeout=20)
    await proxy.stop()
    assert first_seen(sub.event_ids(users_topic(caller))) == every


async def test_a_row_behind_the_cursor_is_published_late_not_lost(
    fresh_dsn: str, conn: asyncpg.Connection, broker: Mosquitto
) -> None:
    """The safety net: should an id ever be drawn below the watermark (a sequence given a
    cache, a restarted identity), the txid horizon still finds the row."""
    caller, callee = await create_user(conn), await create_user(conn)
    call_id = await insert_call(conn, caller, callee)
    async with Subscriber(broker.port, [users_topic(caller)]) as sub:
        async with relay(fresh_dsn, broker.url()):
            await until(lambda: len(sub.event_ids(users_topic(caller))) == 1)
        # As if ids up to +1000 had been published already: the next rows are "behind" it.
        await conn.execute(
            "update orchestrator.relay_cursor set last_id = last_id + 1000,"
            " horizon = pg_current_snapshot()"
        )
        behind = [await _visible_row(conn, call_id) for _ in range(2)]
        async with relay(fresh_dsn, broker.url()):
            await until(lambda: set(behind) <= set(sub.event_ids(users_topic(caller))))
