"""The access rules written once in SQL (migration 20261202000600), checked on the database:
the token grant, ring-capable devices and sendable deliveries, case by case."""

from __future__ import annotations

import asyncpg
import pytest

from tests.fakes.tokens import hex_token
from tests.support.db import add_device, create_user

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize(
    ("status", "is_caller", "while_ringing", "issue", "expire", "refusal"),
    [
        ("ringing", True, False, 100, 200, None),  # the caller, while it rings
        ("ringing", False, False, 100, 200, "not_accepted"),  # the callee must accept first
        ("ringing", False, True, 100, 200, None),  # ... unless CALLEE_TOKEN_WHILE_RINGING
        ("accepted", False, False, 100, 200, None),
        ("accepted", True, False, 100, 100, "max_duration"),  # capped at accepted + max
        ("ended", True, True, 100, 200, "ended"),
        (None, True, True, 100, 200, "not_found"),  # not a participant: no call row
    ],
)
async def test_token_refusal(
    db: asyncpg.Connection,
    status: str | None,
    is_caller: bool,
    while_ringing: bool,
    issue: int,
    expire: int,
    refusal: str | None,
) -> None:
    got = await db.fetchval(
        "select orchestrator.token_refusal($1, $2, $3, $4, $5)",
        status,
        is_caller,
        while_ringing,
        issue,
        expire,
    )
    assert got == refusal


async def test_ring_capable(db: asyncpg.Connection) -> None:
    user = await create_user(db)
    android = await add_device(db, user, "android")
    ios_voip = await add_device(db, user, "ios")
    ios_plain = await add_device(db, user, "ios", token=hex_token("ok"))
    disabled = await add_device(db, user, "android")
    await db.execute("update public.push_devices set disabled_at = now() where id = $1", disabled)
    rows = await db.fetch(
        "select d.id, orchestrator.ring_capable(d) as ok from public.push_devices d"
        " where d.user_id = $1",
        user,
    )
    assert {r["id"]: r["ok"] for r in rows} == {
        android: True,
        ios_voip: True,
        ios_plain: False,  # no VoIP token: an iOS device rings only through PushKit
        disabled: False,
    }


@pytest.mark.parametrize(
    ("kind", "expires", "call_status", "device", "reason"),
    [
        ("ring", "1 minute", "ringing", "android", None),
        ("ring", "1 minute", "accepted", "android", "call_ended"),
        ("ring", "-1 second", "ringing", "android", "deadline_passed"),
        ("missed", "-1 second", "ended", "android", "expired"),
        ("missed", "1 minute", "ended", "android", None),
        ("ring", "1 minute", "ringing", "disabled", "device_disabled"),
        ("ring", "1 minute", "ringing", "deleted", "device_deleted"),
        ("ring", "1 minute", "ringing", "ios_plain", "no_token"),  # rings need the VoIP token
        ("missed", "1 minute", "ended", "ios_plain", None),  # alerts use the APNs token
    ],
)
async def test_delivery_void_reason(
    db: asyncpg.Connection,
    kind: str,
    expires: str,
    call_status: str,
    device: str,
    reason: str | None,
) -> None:
    user = await create_user(db)
    platform = "ios" if device.startswith("ios") else "android"
    token = hex_token("ok") if device == "ios_plain" else None
    device_id = await add_device(db, user, platform, token=token)
    if device == "disabled":
        await db.execute(
            "update public.push_devices set disabled_at = now() where id = $1", device_id
        )
    lookup = "null::public.push_devices" if device == "deleted" else (
        "(select d from public.push_devices d where d.id = $4)"
    )  # fmt: skip
    got = await db.fetchval(
        f"select orchestrator.delivery_void_reason($1, now() + $2::text::interval, $3, {lookup})",
        kind,
        expires,
        call_status,
        *([] if device == "deleted" else [device_id]),
    )
    assert got == reason
