"""`POST /v1/agora/events` over real HTTP on the real token server, against real PostgreSQL.

NCS is the external service here: the test plays it, signing bodies exactly as NCS does
(lowercase hex HMAC-SHA256 of the raw body in Agora-Signature-V2).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest

from orchestrator.adapters.postgres.pool import create_pool
from tests.support.db import client_update
from tests.support.presence import (
    Call,
    Ncs,
    accepted_call,
    audit,
    ncs_server,
    ncs_settings,
    notice,
    ringing_call,
    set_presence,
    sign,
)
from tests.support.tcp_proxy import TcpProxy, proxied

pytestmark = pytest.mark.postgres
PRESENCE_EVENTS = ("participant_joined", "participant_left")


@pytest.fixture
async def conn(fresh_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(fresh_dsn)
    await set_presence(connection, "agora", 3)
    yield connection
    await connection.close()


@pytest.fixture
async def ncs(fresh_dsn: str, conn: asyncpg.Connection) -> AsyncIterator[Ncs]:
    pool = await create_pool(fresh_dsn, size=8, name="test-ncs")
    try:
        async with ncs_server(ncs_settings(fresh_dsn), pool) as running:
            yield running
    finally:
        await pool.close()


async def recorded(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval("select count(*) from orchestrator.ncs_notices")
    return count


async def present(conn: asyncpg.Connection, call: Call) -> dict[int, bool]:
    rows = await conn.fetch(
        "select uid, agora_present from orchestrator.presence where call_id = $1", call.id
    )
    return {r["uid"]: r["agora_present"] for r in rows}


async def test_missing_wrong_or_foreign_signatures_are_401_and_record_nothing(
    conn: asyncpg.Connection, ncs: Ncs
) -> None:
    call = await accepted_call(conn)
    body = orjson.dumps(notice(103, call.id, 1))
    for signature in (None, "", "0" * 64, sign(body).upper(), sign(body + b" "),
                      sign(body, "another-projects-secret")):  # fmt: skip
        status, reply = await ncs.post_raw(body, signature)
        assert status == 401, signature
        assert reply["type"].endswith("/unauthorized")
    assert await recorded(conn) == 0
    assert await present(conn, call) == {}
    assert await audit(conn, call.id, *PRESENCE_EVENTS) == []


async def test_a_notice_delivered_three_times_has_one_effect(
    conn: asyncpg.Connection, ncs: Ncs
) -> None:
    call = await accepted_call(conn)
    doc = notice(103, call.id, 1)
    for _ in range(3):  # NCS retries
        assert await ncs.send(doc) == (200, {"ok": True})
    assert await recorded(conn) == 1
    assert await present(conn, call) == {1: True}
    events = await audit(conn, call.id, *PRESENCE_EVENTS)
    assert [(e[0], e[2]) for e in events] == [
        ("participant_joined", {"uid": 1, "source": "agora", "platform": 1})
    ]
    assert ncs.metrics.ncs_notices.labels("duplicate")._value.get() == 2


async def test_out_of_order_events_follow_client_seq(conn: asyncpg.Connection, ncs: Ncs) -> None:
    call = await accepted_call(conn)
    # The leave (seq 20) overtakes the join (seq 10): the join is older and changes nothing.
    assert (await ncs.send(notice(104, call.id, 2, reason=2, client_seq=20)))[0] == 200
    assert (await ncs.send(notice(103, call.id, 2, client_seq=10)))[0] == 200
    assert await present(conn, call) == {2: False}
    outcomes = await conn.fetch(
        "select client_seq, outcome from orchestrator.ncs_notices order by client_seq"
    )
    assert [(r["client_seq"], r["outcome"]) for r in outcomes] == [(10, "stale"), (20, "applied")]
    assert await audit(conn, call.id, "participant_joined") == []
    # A newer join applies.
    assert (await ncs.send(notice(107, call.id, 2, client_seq=30)))[0] == 200
    assert await present(conn, call) == {2: True}


async def test_channel_destroyed_is_a_leave_of_everyone_present(
    conn: asyncpg.Connection, ncs: Ncs
) -> None:
    call = await accepted_call(conn)
    await ncs.send(notice(103, call.id, 1))
    await ncs.send(notice(105, call.id, 2))
    assert await present(conn, call) == {1: True, 2: True}
    assert (await ncs.send(notice(102, call.id)))[0] == 200
    assert await present(conn, call) == {1: False, 2: False}
    left = [e[2]["uid"] for e in await audit(conn, call.id, "participant_left")]
    assert sorted(left) == [1, 2]
    run_at, accepted_at = await conn.fetchrow(
        "select j.run_at, c.accepted_at from orchestrator.jobs j join public.calls c"
        " on c.id = j.call_id where j.call_id = $1 and j.kind = 'presence'",
        call.id,
    )
    assert run_at > accepted_at  # the timer now counts from the destruction


async def test_a_one_megabyte_body_is_413(conn: asyncpg.Connection, ncs: Ncs) -> None:
    call = await accepted_call(conn)
    doc = notice(103, call.id, 1)
    doc["payload"]["padding"] = "x" * (1024 * 1024)
    body = orjson.dumps(doc)
    status, reply = await ncs.post_raw(body, sign(body))
    assert status == 413
    assert reply["type"].endswith("/payload-too-large")
    assert await recorded(conn) == 0


async def test_ended_calls_unknown_channels_and_junk_are_200_without_effect(
    conn: asyncpg.Connection, ncs: Ncs
) -> None:
    ended = await accepted_call(conn)
    await client_update(conn, ended.caller, ended.id, "ended", "completed")
    live = await accepted_call(conn)
    junk = [
        notice(103, ended.id, 1),  # the call has ended
        notice(103, uuid.uuid4(), 1),  # no such call
        notice(103, "lobby-42", 1),  # not a call id at all
        notice(103, live.id, 7),  # not one of our uids
        notice(103, live.id, 1, product_id=3),  # another Agora product
        notice(999, live.id, 1),  # an event type we do not know
    ]
    for doc in junk:
        assert await ncs.send(doc) == (200, {"ok": True}), doc
    for body in (b"{not json", b"[]", b'{"noticeId": 5, "payload": {}}'):
        assert await ncs.post_raw(body, sign(body)) == (200, {"ok": True})
    assert await recorded(conn) == 0
    assert await present(conn, live) == {}
    assert await audit(conn, ended.id, *PRESENCE_EVENTS) == []


async def test_a_ringing_call_records_presence_for_later(
    conn: asyncpg.Connection, ncs: Ncs
) -> None:
    call = await ringing_call(conn)  # the caller joins the channel while it rings
    await ncs.send(notice(103, call.id, 1))
    assert await present(conn, call) == {1: True}
    assert (
        await conn.fetchval(
            "select count(*) from orchestrator.jobs where call_id = $1 and kind = 'presence'",
            call.id,
        )
        == 0
    )


async def test_a_burst_of_1000_notices_is_answered_200_within_10_s(
    conn: asyncpg.Connection, ncs: Ncs
) -> None:
    calls = [await accepted_call(conn) for _ in range(20)]
    docs = [
        notice(103 if i % 2 == 0 else 104, calls[i % 20].id, 1 + (i // 20) % 2, reason=1)
        for i in range(1000)
    ]
    started = time.monotonic()
    replies = await asyncio.gather(*(ncs.send(doc) for doc in docs))
    elapsed = time.monotonic() - started
    assert [r for r in replies if r != (200, {"ok": True})] == []
    assert elapsed < 10, elapsed
    assert await recorded(conn) == 1000


async def test_a_failed_write_is_503_so_ncs_retries(
    fresh_dsn: str, conn: asyncpg.Connection
) -> None:
    proxy = TcpProxy(("127.0.0.1", 0))
    dsn, target = proxied(fresh_dsn, 0)
    proxy.target = target
    await proxy.start()
    dsn, _ = proxied(fresh_dsn, proxy.port)
    pool = await create_pool(dsn, size=2, name="test-ncs-cut", min_size=0)
    call = await accepted_call(conn)
    try:
        async with ncs_server(ncs_settings(fresh_dsn), pool) as ncs:
            doc = notice(103, call.id, 1)
            assert (await ncs.send(doc))[0] == 200
            await proxy.stop()
            retry = notice(104, call.id, 1, reason=2)
            status, reply = await ncs.send(retry)
            assert status == 503
            assert reply["type"].endswith("/dependency-unavailable")
    finally:
        await pool.close()
    assert await recorded(conn) == 1
