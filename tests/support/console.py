"""Console tests' harness: a real `orchestrator serve` process, a fake Supabase Auth password
grant, operator/user accounts, and a call that rang two devices (run by the real worker)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg

from tests.fakes.jwks import ANON_KEY
from tests.fakes.supabase_password import FakePasswordAuth
from tests.support.db import add_device, as_user, client_update, create_session, insert_call
from tests.support.services import free_port
from tests.support.wait import wait_for

JWT_SECRET = "console-local-stack-jwt-secret-with-32-chars"
PASSWORD = "correct horse battery staple"
ANDROID_TOKEN = "fcm" + "Ab0_:-" * 8  # the shape FCM registration tokens have
IOS_VOIP_TOKEN = "ab" * 32
IOS_ALERT_TOKEN = "cd" * 32


@dataclass
class ConsoleServer:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)


@asynccontextmanager
async def console_server(
    dsn: str, auth_url: str, log_path: Path, *command: str, **extra: str
) -> AsyncIterator[ConsoleServer]:
    """`orchestrator serve` (or the given subcommand, e.g. `worker --serve`) on a free port."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "SUPABASE_URL": auth_url,
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "SUPABASE_ANON_KEY": ANON_KEY,
        "AGORA_APP_ID": "970ca35de60c44645bbae8a215061b33",
        "AGORA_APP_CERT": "5cfd2fd1755d40ecb72977518be15d3b",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_FORMAT": "json",
        **extra,
    }
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", *(command or ("serve",))],
            env=env,
            stdout=log,
            stderr=log,
        )
    server = ConsoleServer(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        async with aiohttp.ClientSession() as http:

            async def up() -> bool:
                assert proc.poll() is None, log_path.read_text()
                try:
                    async with http.get(server.url + "/healthz") as answer:
                        return answer.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(up, timeout=30, interval=0.1)
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@dataclass
class People:
    operator: uuid.UUID
    operator_email: str
    outsider: uuid.UUID
    outsider_email: str


async def people(conn: asyncpg.Connection, auth: FakePasswordAuth) -> People:
    """An operator and a signed-in user who is not one, both with Supabase sessions."""
    found = []
    for operator in (True, False):
        email = f"{'op' if operator else 'user'}-{uuid.uuid4().hex[:8]}@example.test"
        user_id = await conn.fetchval(
            "insert into auth.users (email) values ($1) returning id", email
        )
        auth.add(email, PASSWORD, user_id, await create_session(conn, user_id), operator=operator)
        found += [user_id, email]
    return People(*found)


async def new_user(conn: asyncpg.Connection, name: str) -> uuid.UUID:
    email = f"{name}-{uuid.uuid4().hex[:8]}@example.test"
    user_id: uuid.UUID = await conn.fetchval(
        "insert into auth.users (email, raw_user_meta_data) values ($1, $2::jsonb) returning id",
        email,
        f'{{"full_name": "{name.title()}"}}',
    )
    return user_id


@dataclass
class DeclinedCall:
    call_id: uuid.UUID
    caller: uuid.UUID
    callee: uuid.UUID
    android: uuid.UUID
    ios: uuid.UUID


async def declined_call(conn: asyncpg.Connection) -> DeclinedCall:
    """Rang two devices (worker running), acknowledged on Android, declined by the callee."""
    caller, callee = await new_user(conn, "carol"), await new_user(conn, "dave")
    android = await add_device(conn, callee, "android", token=ANDROID_TOKEN + uuid.uuid4().hex)
    ios = await add_device(
        conn,
        callee,
        "ios",
        token=IOS_ALERT_TOKEN[:-8] + uuid.uuid4().hex[:8],
        voip_token=IOS_VOIP_TOKEN[:-8] + uuid.uuid4().hex[:8],
    )
    call_id = await insert_call(conn, caller, callee)

    async def rings_sent() -> bool:
        sent = await conn.fetchval(
            "select count(*) from public.push_deliveries"
            " where call_id = $1 and kind = 'ring' and status = 'sent'",
            call_id,
        )
        return bool(sent == 2)

    await wait_for(rings_sent, timeout=20)
    async with as_user(conn, callee):
        assert await conn.fetchval("select public.ack_ring($1, $2)", call_id, android)
    await client_update(conn, callee, call_id, "ended", "declined")

    async def stop_sent() -> bool:
        return bool(
            await conn.fetchval(
                "select count(*) from public.push_deliveries"
                " where call_id = $1 and kind = 'stop' and status = 'sent'",
                call_id,
            )
        )

    await wait_for(stop_sent, timeout=20)
    return DeclinedCall(call_id, caller, callee, android, ios)


async def live_call(conn: asyncpg.Connection) -> uuid.UUID:
    """An accepted call (the operator may end it as `failed`)."""
    caller, callee = await new_user(conn, "erin"), await new_user(conn, "frank")
    call_id = await insert_call(conn, caller, callee)
    await client_update(conn, callee, call_id, "accepted")
    return call_id


@asynccontextmanager
async def own_database(server_dsn: str, template: str) -> AsyncIterator[str]:
    """A migrated database for one test module (the console counts calls globally)."""
    name = f"orch_console_{uuid.uuid4().hex[:10]}"
    base, _, query = server_dsn.partition("?")
    dsn = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f"create database {name} template {template}")
        yield dsn
    finally:
        await admin.execute(f"drop database if exists {name} with (force)")
        await admin.close()
