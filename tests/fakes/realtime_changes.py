"""Feeding changes into FakeRealtimeServer (a mixin): postgres_changes frames in Supabase's
format, routed by binding ids exactly as the real server does, or any frame verbatim."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.realtime_server import _Conn

# Postgres type names as Supabase reports them in `columns`, for the columns of public.calls.
CALL_COLUMN_TYPES = {
    "id": "uuid", "caller_id": "uuid", "callee_id": "uuid", "video": "bool", "status": "text",
    "end_reason": "text", "ended_by": "uuid", "created_at": "timestamptz",
    "ring_deadline": "timestamptz", "accepted_at": "timestamptz", "ended_at": "timestamptz",
    "updated_at": "timestamptz", "version": "int4",
}  # fmt: skip


def now_iso() -> str:
    """A commit_timestamp as Supabase writes it (RFC 3339, UTC, milliseconds)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Changes:
    _conns: set[_Conn]
    _each_channel: Callable[..., Coroutine[Any, Any, None]]
    _push: Callable[..., Coroutine[Any, Any, int]]
    drop_events: int
    changes_delivered: int
    changes_dropped: int
    changes_lost: int
    sent: deque[tuple[str, dict[str, Any]]]

    async def emit_change(
        self, record: dict[str, Any], type: str = "INSERT", *, schema: str = "public",
        table: str = "calls", old_record: dict[str, Any] | None = None,
        commit_timestamp: str | None = None,
    ) -> int:  # fmt: skip
        """One change to every matching subscriber; returns how many got it (0: lost)."""
        data: dict[str, Any] = {
            "schema": schema, "table": table, "commit_timestamp": commit_timestamp or now_iso(),
            "type": type, "errors": None, "record": record,
            "columns": [{"name": k, "type": CALL_COLUMN_TYPES.get(k, "text")} for k in record],
        }  # fmt: skip
        if type == "UPDATE":  # under RLS old_record may hold only the primary key
            data["old_record"] = old_record or {"id": record.get("id")}
        self.sent.append((type, record))
        return await self.emit_data(data, type, schema=schema, table=table)

    async def emit_data(
        self, data: dict[str, Any], type: str, *, schema: str = "public", table: str = "calls"
    ) -> int:
        """A postgres_changes frame with this `data` verbatim (malformed payloads too), sent
        with the ids of the bindings that match schema/table/type, as the server routes it."""
        if self.drop_events > 0:
            self.drop_events -= 1
            self.changes_dropped += 1
            return 0
        delivered = 0
        for conn in list(self._conns):
            for chan in list(conn.channels.values()):
                ids = [b["id"] for b in chan.bindings if _matches(b, schema, table, type)]
                if ids and not conn.frozen:
                    payload = {"data": data, "ids": ids}
                    delivered += await self._push(conn, chan.topic, "postgres_changes", payload)
        self.changes_delivered += delivered > 0
        self.changes_lost += delivered == 0
        return delivered

    async def emit_raw(self, event: str, payload: Any) -> None:
        """Any frame, as is, on every joined channel (frames the client will reject)."""
        await self._each_channel(lambda chan: (event, payload))


def _matches(binding: dict[str, Any], schema: str, table: str, type: str) -> bool:
    return (
        binding.get("event") in (type, "*")
        and binding.get("schema", "public") == schema
        and binding.get("table", table) == table
    )
