"""The demo's simulated clients: one call per end reason, acting exactly as apps do."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from orchestrator.adapters.postgres import demo_sql as sql

Script = Callable[["Clients"], Awaitable[uuid.UUID]]


@dataclass
class Scenario:
    name: str
    expected: str
    script: Script


class Clients:
    """Users of the demo, each acting through their own RLS-checked session."""

    def __init__(self, conn: asyncpg.Connection, users: dict[str, uuid.UUID]) -> None:
        self.conn = conn
        self.users = users
        self.fail_calls: set[uuid.UUID] = set()

    @asynccontextmanager
    async def as_user(self, name: str) -> AsyncIterator[asyncpg.Connection]:
        async with self.conn.transaction():
            await self.conn.execute(sql.SET_ROLE_AUTHENTICATED)
            claims = json.dumps({"sub": str(self.users[name]), "role": "authenticated"})
            await self.conn.execute(sql.SET_JWT_CLAIMS, claims)
            yield self.conn

    async def call(self, caller: str, callee: str, call_id: uuid.UUID | None = None) -> uuid.UUID:
        async with self.as_user(caller) as conn:
            new_id: uuid.UUID = await conn.fetchval(
                sql.INSERT_CALL,
                call_id,
                self.users[callee],
            )
        return new_id

    async def set_status(
        self, who: str, call_id: uuid.UUID, status: str, reason: str | None = None
    ) -> None:
        async with self.as_user(who) as conn:
            await conn.execute(
                sql.SET_CALL_STATUS,
                call_id,
                status,
                reason,
            )

    async def heartbeat(self, who: str, call_id: uuid.UUID) -> str:
        """What an app does every PRESENCE_TIMEOUT_SECONDS / 3 while in a call."""
        async with self.as_user(who) as conn:
            reply = json.loads(await conn.fetchval(sql.HEARTBEAT, call_id))
        status: str = reply["status"]
        return status

    async def status(self, call_id: uuid.UUID) -> str:
        value: str = await self.conn.fetchval(sql.CALL_STATUS, call_id)
        return value

    async def until(self, call_id: uuid.UUID, status: str, timeout: float = 20) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.status(call_id) != status:
            if loop.time() > deadline:
                raise TimeoutError(f"call {call_id} never became {status}")
            await asyncio.sleep(0.05)

    async def rang(self, call_id: uuid.UUID) -> None:
        """Wait until the callee's phone rang (the ring push was sent)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not await self.conn.fetchval(
            sql.RING_SENT,
            call_id,
        ):
            if loop.time() > deadline:
                raise TimeoutError(f"call {call_id} never rang")
            await asyncio.sleep(0.05)


async def completed(c: Clients) -> uuid.UUID:
    call = await c.call("ada", "bob")
    await c.rang(call)
    await c.set_status("bob", call, "accepted")
    await asyncio.sleep(0.5)  # they talk
    await c.set_status("ada", call, "ended", "completed")
    return call


async def declined(c: Clients) -> uuid.UUID:
    call = await c.call("cyd", "dan")
    await c.rang(call)
    await c.set_status("dan", call, "ended", "declined")
    return call


async def cancelled(c: Clients) -> uuid.UUID:
    call = await c.call("eve", "fay")
    await c.rang(call)
    await c.set_status("eve", call, "ended", "cancelled")
    return call


async def missed(c: Clients) -> uuid.UUID:
    call = await c.call("gus", "hal")
    await c.until(call, "ended")  # nobody answers: the server's ring timer fires
    return call


async def busy(c: Clients) -> uuid.UUID:
    first = await c.call("ivy", "jon")
    await c.rang(first)
    await c.set_status("jon", first, "accepted")
    call = await c.call("kim", "jon")  # jon is already in a call
    await c.until(call, "ended")
    await c.set_status("ivy", first, "ended", "completed")
    return call


async def unreachable(c: Clients) -> uuid.UUID:
    call = await c.call("lea", "max")  # max has no ring-capable device
    await c.until(call, "ended")
    return call


async def failed(c: Clients) -> uuid.UUID:
    call_id = uuid.uuid4()  # clients may choose their own id (idempotent retries)
    c.fail_calls.add(call_id)  # the worker's pickup of this call hits an injected fault
    await c.call("ned", "oli", call_id)
    await c.until(call_id, "ended")
    return call_id


async def max_duration(c: Clients) -> uuid.UUID:
    call = await c.call("pam", "quy")
    await c.rang(call)
    await c.set_status("quy", call, "accepted")
    # Both apps stay in the call, beating, until the server's max-duration timer fires.
    while await c.heartbeat("pam", call) != "ended" and await c.heartbeat("quy", call) != "ended":
        await asyncio.sleep(1)
    return call


async def glare(c: Clients) -> uuid.UUID:
    first = await c.call("ray", "sam")
    second = await c.call("sam", "ray")  # at the same moment, the other way round
    await c.until(second, "ended")  # merged into the earlier call ...
    await c.until(first, "accepted")  # ... which the server connects
    await c.set_status("ray", first, "ended", "completed")
    return second


async def connection_lost(c: Clients) -> uuid.UUID:
    call = await c.call("tom", "uma")
    await c.rang(call)
    await c.set_status("uma", call, "accepted")
    for _ in range(2):  # both apps beat while they talk ...
        await c.heartbeat("tom", call)
        await c.heartbeat("uma", call)
        await asyncio.sleep(1)
    await c.until(call, "ended")  # ... then both lose the network: presence ends the call
    return call


SCENARIOS = [
    Scenario("answered, then hung up", "completed", completed),
    Scenario("callee declines", "declined", declined),
    Scenario("caller gives up", "cancelled", cancelled),
    Scenario("nobody answers", "missed", missed),
    Scenario("callee already in a call", "busy", busy),
    Scenario("callee has no device", "unreachable", unreachable),
    Scenario("server fault at pickup", "failed", failed),
    Scenario("call runs past the limit", "max_duration", max_duration),
    Scenario("both call each other", "glare", glare),
    Scenario("both apps lose the network", "connection_lost", connection_lost),
]
NAMES = [
    "ada",
    "bob",
    "cyd",
    "dan",
    "eve",
    "fay",
    "gus",
    "hal",
    "ivy",
    "jon",
    "kim",
    "lea",
    "max",
    "ned",
    "oli",
    "pam",
    "quy",
    "ray",
    "sam",
    "tom",
    "uma",
]
WITHOUT_DEVICES = {"max"}
