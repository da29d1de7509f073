"""Database helpers for tests: users, sessions, devices, and acting as a client like PostgREST."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from tests.fakes.tokens import hex_token


async def create_user(conn: asyncpg.Connection, *, name: str | None = None) -> uuid.UUID:
    meta = {"full_name": name} if name else {}
    user_id: uuid.UUID = await conn.fetchval(
        "insert into auth.users (email, raw_user_meta_data) values ($1, $2::jsonb) returning id",
        f"{uuid.uuid4().hex[:12]}@example.test",
        json.dumps(meta),
    )
    return user_id


async def create_session(conn: asyncpg.Connection, user_id: uuid.UUID) -> uuid.UUID:
    session_id: uuid.UUID = await conn.fetchval(
        "insert into auth.sessions (user_id) values ($1) returning id", user_id
    )
    return session_id


async def add_device(
    conn: asyncpg.Connection,
    user_id: uuid.UUID,
    platform: str = "android",
    *,
    token: str | None = None,
    voip_token: str | None = None,
    apns_environment: str | None = None,
) -> uuid.UUID:
    if platform == "android" and token is None:
        token = f"ok-fcm-{uuid.uuid4().hex}"
    if platform == "ios" and token is None and voip_token is None:
        token, voip_token = hex_token("ok"), hex_token("ok")
    device_id: uuid.UUID = await conn.fetchval(
        "insert into public.push_devices (user_id, platform, token, voip_token, apns_environment)"
        " values ($1, $2, $3, $4, $5) returning id",
        user_id,
        platform,
        token,
        voip_token,
        apns_environment,
    )
    return device_id


@asynccontextmanager
async def as_user(
    conn: asyncpg.Connection, user_id: uuid.UUID | None, role: str = "authenticated"
) -> AsyncIterator[asyncpg.Connection]:
    """Run statements as PostgREST would for this user: SET LOCAL ROLE + JWT claims."""
    async with conn.transaction():
        await conn.execute(f"set local role {role}")
        claims = {"role": role} | ({"sub": str(user_id)} if user_id else {})
        await conn.execute("select set_config('request.jwt.claims', $1, true)", json.dumps(claims))
        yield conn


async def insert_call(
    conn: asyncpg.Connection, caller: uuid.UUID, callee: uuid.UUID, *, video: bool = True
) -> uuid.UUID:
    """Start a call as the caller (a client insert, exactly as the app does it)."""
    async with as_user(conn, caller):
        call_id: uuid.UUID = await conn.fetchval(
            "insert into public.calls (callee_id, video) values ($1, $2) returning id",
            callee,
            video,
        )
    return call_id


async def client_update(
    conn: asyncpg.Connection,
    user: uuid.UUID,
    call_id: uuid.UUID,
    status: str,
    end_reason: str | None = None,
) -> None:
    async with as_user(conn, user):
        await conn.execute(
            "update public.calls set status = $2, end_reason = $3 where id = $1",
            call_id,
            status,
            end_reason,
        )
