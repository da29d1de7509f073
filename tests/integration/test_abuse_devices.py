"""Abuse limits on devices and locks, against the real database (issue 10).

Each test is an attack an ordinary account could try with its own access token: on the first
release every one of them succeeded (bulk device inserts, unbounded fan-out, tokens that end up
inside an APNs :path, locking anybody's id).
"""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg
import pytest

from orchestrator.adapters.postgres.migrate import (
    apply_settings_from_env,
    emulate_supabase,
    migrate,
)
from orchestrator.adapters.postgres.store import PostgresStore
from orchestrator.config import Settings
from orchestrator.domain.pickup import Ring, decide_pickup
from orchestrator.domain.work import Job
from tests.conftest import with_database
from tests.support.db import as_user, create_user, insert_call
from tests.support.rls import attempt, commit_as, user

REGISTER = "select public.register_push_device($1, $2, $3)"


def apns() -> str:
    return uuid.uuid4().hex * 2  # 64 lowercase hex characters


def fcm() -> str:
    return f"fcm:{uuid.uuid4().hex}-{uuid.uuid4().hex}"


async def register(
    conn: asyncpg.Connection, who: uuid.UUID, platform: str = "android"
) -> uuid.UUID:
    token, voip = (fcm(), None) if platform == "android" else (apns(), apns())
    device: uuid.UUID = await commit_as(conn, user(who), REGISTER, platform, token, voip)
    return device


async def active(conn: asyncpg.Connection, who: uuid.UUID) -> list[uuid.UUID]:
    rows = await conn.fetch(
        "select id from public.push_devices where user_id = $1 and disabled_at is null"
        " order by last_seen_at",
        who,
    )
    return [r["id"] for r in rows]


# --- the device cap -------------------------------------------------------------------------


async def test_a_client_cannot_insert_devices_directly_let_alone_in_bulk(
    db: asyncpg.Connection,
) -> None:
    attacker = await create_user(db)
    bulk = (
        "insert into public.push_devices (platform, token)"
        " select 'android', 'fcm-' || g || repeat('x', 40) from generate_series(1, 10000) g"
    )
    assert (await attempt(db, user(attacker), bulk)).sqlstate == "42501"
    one = "insert into public.push_devices (platform, token) values ('android', $1)"
    assert (await attempt(db, user(attacker), one, fcm())).sqlstate == "42501"
    assert await active(db, attacker) == []


async def test_the_eleventh_registration_evicts_the_least_recently_seen(
    db: asyncpg.Connection,
) -> None:
    owner = await create_user(db)
    devices = [await register(db, owner, "ios" if i % 2 else "android") for i in range(10)]
    assert await active(db, owner) == devices
    # Seeing the oldest device again (the app re-registers at start) makes it the newest.
    token = await db.fetchval("select token from public.push_devices where id = $1", devices[0])
    again = await commit_as(db, user(owner), REGISTER, "android", token, None)
    assert again == devices[0]
    eleventh = await register(db, owner)
    assert await active(db, owner) == [*devices[2:], devices[0], eleventh]
    row = await db.fetchrow(
        "select disabled_at, disabled_reason from public.push_devices where id = $1", devices[1]
    )
    assert row["disabled_at"] is not None and row["disabled_reason"] == "device_limit"


async def test_registering_many_devices_keeps_the_cap_and_one_call_rings_at_most_ten(
    db: asyncpg.Connection, migrated_dsn: str
) -> None:
    attacker, victim = await create_user(db), await create_user(db)
    for _ in range(40):  # as fast as the RPC allows; every one is accepted, the oldest evicted
        await register(db, victim)
    assert len(await active(db, victim)) == 10
    call_id = await insert_call(db, attacker, victim)
    pool = await asyncpg.create_pool(migrated_dsn, min_size=1, max_size=2)
    try:
        store = PostgresStore(pool, worker_id="test", lease_seconds=5)
        job_id = await db.fetchval(
            "select id from orchestrator.jobs where call_id = $1 and kind = 'pickup'", call_id
        )
        result = await store.pickup(Job(job_id, call_id, "pickup", 1), decide_pickup)
    finally:
        await pool.close()
    assert isinstance(result.decision, Ring)
    assert len(result.deliveries) == 10
    rings = await db.fetchval(
        "select count(*) from public.push_deliveries where call_id = $1 and kind = 'ring'", call_id
    )
    assert rings == 10


async def test_the_cap_holds_for_the_service_role_too_and_follows_the_setting(
    db: asyncpg.Connection,
) -> None:
    owner = await create_user(db)
    async with as_user(db, None, role="service_role"):
        for _ in range(12):
            await db.execute(
                "insert into public.push_devices (user_id, platform, token)"
                " values ($1, 'android', $2)",
                owner,
                fcm(),
            )
    assert len(await active(db, owner)) == 10
    await db.execute("update orchestrator.settings set max_devices_per_user = 3")
    try:
        await register(db, owner)
        assert len(await active(db, owner)) == 3
    finally:
        await db.execute("update orchestrator.settings set max_devices_per_user = 10")


# --- token formats --------------------------------------------------------------------------

GOOD_HEX = "ab" * 32


@pytest.mark.parametrize(
    ("platform", "token", "voip"),
    [
        ("ios", "../../3/device/" + GOOD_HEX, None),
        ("ios", GOOD_HEX + "\r\nx-evil: 1", None),
        ("ios", GOOD_HEX + "?x=1", None),
        ("ios", GOOD_HEX[:30] + " " + GOOD_HEX[:33], None),
        ("ios", "ab" * 31, None),  # 62: too short
        ("ios", "a" * 201, None),  # too long
        ("ios", "zz" * 32, None),  # not hex
        ("ios", None, "../" + GOOD_HEX),
        ("ios", GOOD_HEX, "ab" * 101),
        ("android", "fcm/../" + "a" * 40, None),
        ("android", "a" * 40 + "\n", None),
        ("android", "a" * 40 + "?x", None),
        ("android", "a" * 20 + " " + "a" * 20, None),
        ("android", "a" * 31, None),
        ("android", "a" * 4097, None),
    ],
)
async def test_malformed_tokens_are_refused_with_ca031(
    db: asyncpg.Connection, platform: str, token: str | None, voip: str | None
) -> None:
    who = await create_user(db)
    outcome = await attempt(db, user(who), REGISTER, platform, token, voip, value=True)
    assert outcome.sqlstate == "CA031", outcome
    assert "invalid push token" in outcome.message
    for part in filter(None, (token, voip)):
        assert part not in outcome.message  # the token is never echoed


async def test_well_formed_tokens_are_accepted_and_apns_is_stored_lowercase(
    db: asyncpg.Connection,
) -> None:
    who = await create_user(db)
    upper = (uuid.uuid4().hex * 2).upper()
    device = await commit_as(db, user(who), REGISTER, "ios", upper, "A" * 200)
    row = await db.fetchrow(
        "select token, voip_token from public.push_devices where id = $1", device
    )
    assert (row["token"], row["voip_token"]) == (upper.lower(), "a" * 200)
    longest = "aZ0_:-" * 682 + "abcd"  # 4096 characters of the FCM alphabet
    assert await commit_as(db, user(who), REGISTER, "android", longest, None) is not None
    # The same rule holds for every writer: a CHECK constraint.
    bad = "insert into public.push_devices (user_id, platform, token) values ($1, 'android', $2)"
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(bad, who, "x" * 40 + "/../")


async def test_the_migration_disables_existing_malformed_rows_and_says_how_many(
    pg_server_dsn: str,
) -> None:
    name = f"orch_abuse_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(pg_server_dsn)
    await admin.execute(f"create database {name}")
    conn = await asyncpg.connect(with_database(pg_server_dsn, name))
    notices: list[str] = []
    conn.add_log_listener(lambda _c, message: notices.append(str(message.message)))
    try:
        await emulate_supabase(conn)
        await migrate(conn, upto="20261201000500")
        owner = await create_user(conn)
        rows = [
            ("android", "short", None),  # invalid
            ("ios", "ok-alert-1", "ok-voip-1"),  # invalid: not hex
            ("ios", "AB" * 32, None),  # upper case: kept, stored lowercase
            ("android", fcm(), None),  # valid
        ]
        ids = [
            await conn.fetchval(
                "insert into public.push_devices (user_id, platform, token, voip_token)"
                " values ($1, $2, $3, $4) returning id",
                owner,
                *row,
            )
            for row in rows
        ]
        await migrate(conn)
        found = {
            r["id"]: r
            for r in await conn.fetch("select * from public.push_devices where user_id = $1", owner)
        }
        assert len(found) == 4  # never deleted
        assert [found[i]["disabled_reason"] for i in ids] == [
            "invalid_token",
            "invalid_token",
            None,
            None,
        ]
        assert found[ids[2]]["token"] == "ab" * 32
        assert any("1 lowercased, 2 disabled as invalid_token" in n for n in notices), notices
    finally:
        await conn.close()
        await admin.execute(f"drop database if exists {name} with (force)")
        await admin.close()


# --- lock_user ------------------------------------------------------------------------------


async def test_a_client_may_lock_only_its_own_id(db: asyncpg.Connection) -> None:
    me, someone = await create_user(db), await create_user(db)
    lock = "select orchestrator.lock_user($1)"
    assert (await attempt(db, user(me), lock, someone)).sqlstate == "42501"
    assert (await attempt(db, user(me), lock, me)).ok
    # The system (the worker) locks anyone; a client's own call insert still locks itself.
    await db.execute(lock, someone)
    assert await insert_call(db, me, someone) is not None


async def test_concurrent_registrations_cannot_both_slip_under_the_cap(migrated_dsn: str) -> None:
    conns = [await asyncpg.connect(migrated_dsn) for _ in range(6)]
    try:
        owner = await create_user(conns[0])

        async def burst(conn: asyncpg.Connection) -> None:
            for _ in range(5):
                await register(conn, owner)

        await asyncio.gather(*(burst(c) for c in conns))
        assert len(await active(conns[0], owner)) == 10
    finally:
        for conn in conns:
            await conn.close()


async def test_max_devices_per_user_is_written_to_the_database_only_when_set(
    fresh_dsn: str,
) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    try:
        read = "select max_devices_per_user from orchestrator.settings"
        await apply_settings_from_env(conn, Settings.from_env({}))
        assert await conn.fetchval(read) == 10
        await apply_settings_from_env(conn, Settings.from_env({"MAX_DEVICES_PER_USER": "4"}))
        assert await conn.fetchval(read) == 4
        await apply_settings_from_env(conn, Settings.from_env({}))
        assert await conn.fetchval(read) == 4  # unset leaves the database's value alone
    finally:
        await conn.close()
