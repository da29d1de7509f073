"""Presence tests' helpers: accepted calls, heartbeats as a client, signed NCS notices over real
HTTP to the real token server."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import orjson

from orchestrator.config import Settings
from orchestrator.metrics import Metrics
from orchestrator.tokenserver.app import build_app, start_site
from orchestrator.tokenserver.ncs import NCS_PATH, NcsLimits
from tests.support.db import add_device, as_user, client_update, create_user, insert_call

NCS_SECRET = "ncs-secret-for-tests-0123456789abcdef"
APP_ID = "970CA35de60c44645bbae8a215061b33"
APP_CERT = "5CFd2fd1755d40ecb72977518be15d3b"
_SEQ = itertools.count(1)


@dataclass
class Call:
    id: uuid.UUID
    caller: uuid.UUID
    callee: uuid.UUID


async def set_presence(conn: asyncpg.Connection, source: str, timeout: int) -> None:
    """The injected short timer: the database row the worker and the RPC read."""
    await conn.execute(
        "update orchestrator.presence_settings set source = $1, timeout_seconds = $2",
        source,
        timeout,
    )


async def ringing_call(conn: asyncpg.Connection) -> Call:
    caller, callee = await create_user(conn), await create_user(conn)
    await add_device(conn, callee)  # so a running worker rings it rather than `unreachable`
    return Call(await insert_call(conn, caller, callee), caller, callee)


async def accepted_call(conn: asyncpg.Connection) -> Call:
    call = await ringing_call(conn)
    await client_update(conn, call.callee, call.id, "accepted")
    return call


async def beat(conn: asyncpg.Connection, user: uuid.UUID, call_id: uuid.UUID) -> dict[str, Any]:
    async with as_user(conn, user):
        value = await conn.fetchval("select public.call_heartbeat($1)", call_id)
    result: dict[str, Any] = orjson.loads(value)
    return result


async def call_row(conn: asyncpg.Connection, call_id: uuid.UUID) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "select status, end_reason, version, accepted_at, ended_at, ended_by"
        " from public.calls where id = $1",
        call_id,
    )
    return row


async def audit(conn: asyncpg.Connection, call_id: uuid.UUID, *events: str) -> list[Any]:
    rows = await conn.fetch(
        "select event, end_reason, detail from public.call_audit where call_id = $1"
        " and event = any($2::text[]) order by id",
        call_id,
        list(events),
    )
    return [(r["event"], r["end_reason"], orjson.loads(r["detail"])) for r in rows]


def notice(
    event_type: int,
    call_id: uuid.UUID | str,
    uid: int | None = None,
    *,
    reason: int | None = None,
    client_seq: int | None = None,
    notice_id: str | None = None,
    product_id: int = 1,
) -> dict[str, Any]:
    payload: dict[str, Any] = {"channelName": str(call_id), "ts": 1_700_000_000, "platform": 1}
    if uid is not None:
        payload["uid"] = uid
    if reason is not None:
        payload["reason"] = reason
    payload["clientSeq"] = next(_SEQ) if client_seq is None else client_seq
    return {
        "noticeId": notice_id or uuid.uuid4().hex,
        "productId": product_id,
        "eventType": event_type,
        "notifyMs": 1_700_000_000_000,
        "sid": uuid.uuid4().hex,
        "payload": payload,
    }


def sign(body: bytes, secret: str = NCS_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Ncs:
    url: str
    http: aiohttp.ClientSession
    metrics: Metrics

    async def post_raw(self, body: bytes, signature: str | None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["Agora-Signature-V2"] = signature
        async with self.http.post(self.url + NCS_PATH, data=body, headers=headers) as reply:
            return reply.status, await reply.json(content_type=None)

    async def send(self, doc: dict[str, Any], secret: str = NCS_SECRET) -> tuple[int, Any]:
        body = orjson.dumps(doc)
        return await self.post_raw(body, sign(body, secret))


def ncs_settings(dsn: str, **changes: Any) -> Settings:
    base = Settings(
        database_url=dsn,
        supabase_url="http://127.0.0.1:9",
        supabase_jwt_secret="local-stack-jwt-secret-with-at-least-32-chars",
        agora_app_id=APP_ID,
        agora_app_cert=APP_CERT,
        agora_ncs_secret=NCS_SECRET,
        host="127.0.0.1",
        port=0,
    )
    return base.with_overrides(**changes)


@asynccontextmanager
async def ncs_server(
    settings: Settings, pool: asyncpg.Pool, limits: NcsLimits | None = None
) -> AsyncIterator[Ncs]:
    """The real token server (`orchestrator serve`'s app) on a free port."""
    metrics = Metrics()
    runner = await start_site(build_app(settings, pool, metrics, ncs_limits=limits), settings)
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            yield Ncs(f"http://127.0.0.1:{port}", http, metrics)
    finally:
        await runner.cleanup()
