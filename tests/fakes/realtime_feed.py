"""Feed the fake Realtime server from a real PostgreSQL table, for through-the-worker tests.

LISTEN on a channel whose payloads are call ids (the schema's trigger NOTIFYs
`orchestrator_calls` for client writes), read the row, and emit it as Supabase would: a
postgres_changes frame whose record is the row as JSON (`to_jsonb`, so timestamps are strings).

    async with server.feed_from_postgres(dsn) as feed:
        ...  # client writes now reach RealtimeEventSource as Realtime events

A payload may also be JSON `{"id": "...", "type": "INSERT"|"UPDATE"}`, or several ids separated
by commas or whitespace. Without a type, a row at version 1 (or with created_at = updated_at)
is an INSERT, anything else an UPDATE: the worker treats both alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg

if TYPE_CHECKING:
    from tests.fakes.realtime_server import FakeRealtimeServer

log = logging.getLogger("tests.fake_realtime.feed")
QUALIFIED = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")


class PostgresFeed:
    def __init__(self, server: FakeRealtimeServer, dsn: str, *, channel: str, table: str) -> None:
        if not QUALIFIED.match(table):
            raise ValueError(f"table must be schema.name in lower case, got {table!r}")
        self._server, self._dsn, self.channel = server, dsn, channel
        self._schema, self._table = table.split(".")
        self._query = f"select to_jsonb(c)::text from {table} c where c.id = $1"
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._conn: Any = None
        self._pump: asyncio.Task[None] | None = None
        self.forwarded = self.missing = self.errors = 0
        self.notifications = 0

    async def __aenter__(self) -> PostgresFeed:
        self._conn = await asyncpg.connect(self._dsn)
        await self._conn.add_listener(self.channel, self._on_notify)
        self._pump = asyncio.create_task(self._run(), name="realtime-feed")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if self._conn is not None:
            await self._conn.close()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.notifications += 1
        self._queue.put_nowait(payload)

    async def _run(self) -> None:
        while True:  # one at a time, in NOTIFY order, like a replication stream
            payload = await self._queue.get()
            for call_id, kind in _parse(payload):
                try:
                    await self._forward(call_id, kind)
                except Exception:
                    self.errors += 1
                    log.exception("feed: could not forward %s", call_id)

    async def _forward(self, call_id: UUID, kind: str | None) -> None:
        text = await self._conn.fetchval(self._query, call_id)
        if text is None:
            self.missing += 1  # gone (pruned) or not visible: Realtime would not send it either
            return
        record = json.loads(text)
        if kind is None:
            fresh = record.get("version") == 1 or (
                "version" not in record and record.get("created_at") == record.get("updated_at")
            )
            kind = "INSERT" if fresh else "UPDATE"
        stamp = record.get("updated_at")
        await self._server.emit_change(
            record, kind, schema=self._schema, table=self._table,
            commit_timestamp=stamp if isinstance(stamp, str) else None,
        )  # fmt: skip
        self.forwarded += 1


def _parse(payload: str) -> list[tuple[UUID, str | None]]:
    text = payload.strip()
    try:
        if text.startswith("{"):
            obj = json.loads(text)
            kind = obj.get("type")
            return [(UUID(str(obj["id"])), kind if kind in ("INSERT", "UPDATE") else None)]
        # The trigger sends "<call id>" or "<call id> <end reason>": the id is the first word.
        first = re.split(r"[,\s]+", text)[0]
        return [(UUID(first), None)] if first else []
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("feed: ignoring a payload that holds no call id")
        return []
