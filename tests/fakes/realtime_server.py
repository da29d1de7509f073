"""A fake Supabase Realtime server: Phoenix channels v1 JSON over real websockets on 127.0.0.1.

It speaks what the real `realtime` client needs: `/realtime/v1/websocket?apikey=…&vsn=1.0.0`,
phx_join with postgres_changes bindings (the reply echoes them in order with non-zero integer
ids), the `system` "Subscribed to PostgreSQL" message, heartbeats on topic "phoenix", and
postgres_changes frames in Supabase's format. Changes are fed with `emit_change` or from a real
table with `feed_from_postgres` (realtime_feed). Every fault of the fault matrix is a knob or a
method; counters let tests wait on what the server saw.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.fakes.realtime_changes import Changes
from tests.fakes.realtime_faults import Faults, system_payload

if TYPE_CHECKING:
    from tests.fakes.realtime_feed import PostgresFeed

SUBSCRIBED = "Subscribed to PostgreSQL"


@dataclass(eq=False)
class _Channel:
    topic: str
    join_ref: str | None
    bindings: list[dict[str, Any]]


@dataclass(eq=False)
class _Conn:
    ws: ServerConnection
    channels: dict[str, _Channel] = field(default_factory=dict)
    frozen: bool = False  # half-open: reads nothing, answers nothing


class FakeRealtimeServer(Changes, Faults):
    def __init__(self, *, apikey: str = "test-service-role-key", host: str = "127.0.0.1") -> None:
        self.apikey, self.host, self.port = apikey, host, 0
        # Fault knobs (set them at any time).
        self.reject_status: int | None = None  # answer every handshake with this HTTP status
        self.ignore_joins = 0  # leave the next N phx_join unanswered
        self.subscribe_errors = 0  # answer the next N joins with a system error, not Subscribed
        self.drop_events = 0  # silently skip the next N changes (over quota)
        self.answer_heartbeats = True
        # What the server saw.
        self.connections = self.rejected = self.joins = self.heartbeats = self.leaves = 0
        self.subscribed = self.changes_delivered = self.changes_dropped = self.changes_lost = 0
        self.last_join_bindings: list[dict[str, Any]] = []
        self.sent: deque[tuple[str, dict[str, Any]]] = deque(maxlen=1000)  # (type, record)
        self._ids = itertools.count(38_606_455)  # non-zero binding ids, like Supabase's
        self._conns: set[_Conn] = set()
        self._server: Server | None = None

    @property
    def url(self) -> str:
        """What SUPABASE_URL would be; the client appends /realtime/v1/websocket."""
        return f"http://{self.host}:{self.port}"

    @property
    def subscribers(self) -> int:
        return sum(len(c.channels) for c in self._conns if not c.frozen)

    async def start(self) -> None:
        """Listen (again, on the same port after `stop`)."""
        self._server = await serve(
            self._handler, self.host, self.port, process_request=self._process_request,
            ping_interval=None, logger=logging.getLogger("tests.fake_realtime"),
        )  # fmt: skip
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        """An outage: stop listening (connection refused) and cut every connection (1006)."""
        if self._server is None:
            return
        self._server.close(close_connections=False)
        self._abort_all()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> FakeRealtimeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def feed_from_postgres(
        self, dsn: str, *, channel: str = "orchestrator_calls", table: str = "public.calls"
    ) -> PostgresFeed:
        """`async with server.feed_from_postgres(dsn):` forwards NOTIFY <channel>, '<call id>'
        as a postgres_changes frame carrying the row read from `table` (see realtime_feed)."""
        from tests.fakes.realtime_feed import PostgresFeed

        return PostgresFeed(self, dsn, channel=channel, table=table)

    # Protocol.

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        if url.path != "/realtime/v1/websocket":
            return connection.respond(404, "not found\n")
        if self.reject_status is not None or query.get("apikey") != [self.apikey]:
            self.rejected += 1
            return connection.respond(self.reject_status or 401, "rejected\n")
        if query.get("vsn") != ["1.0.0"]:
            return connection.respond(400, "unsupported vsn\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        conn = _Conn(ws)
        self._conns.add(conn)
        self.connections += 1
        try:
            async for raw in ws:
                if not conn.frozen:
                    await self._on_message(conn, json.loads(raw))
        except ConnectionClosed:
            pass
        finally:
            self._conns.discard(conn)

    async def _on_message(self, conn: _Conn, msg: dict[str, Any]) -> None:
        topic, event, ref, payload = msg["topic"], msg["event"], msg.get("ref"), msg["payload"]
        if topic == "phoenix" and event == "heartbeat":
            self.heartbeats += 1
            if self.answer_heartbeats:
                await self._push(conn, "phoenix", "phx_reply", _reply("ok", {}), ref)
        elif event == "phx_join":
            await self._join(conn, topic, ref, payload)
        elif event == "phx_leave":
            self.leaves += 1
            conn.channels.pop(topic, None)
            await self._push(conn, topic, "phx_reply", _reply("ok", {}), ref)

    async def _join(self, conn: _Conn, topic: str, ref: str | None, payload: Any) -> None:
        self.joins += 1
        if self.ignore_joins > 0:
            self.ignore_joins -= 1
            return
        if payload.get("access_token") not in (None, self.apikey):
            await self._push(conn, topic, "phx_reply", _reply("error", {"reason": "bad JWT"}), ref)
            return
        asked = (payload.get("config") or {}).get("postgres_changes") or []
        self.last_join_bindings = [dict(b) for b in asked]
        bindings = [{**b, "id": next(self._ids)} for b in asked]
        conn.channels[topic] = _Channel(topic, ref, bindings)
        reply = _reply("ok", {"postgres_changes": bindings})
        await self._push(conn, topic, "phx_reply", reply, ref)
        if not bindings:
            return
        failing = self.subscribe_errors > 0
        self.subscribe_errors -= failing
        self.subscribed += not failing
        status, message = ("error", "subscribe failed") if failing else ("ok", SUBSCRIBED)
        await self._push(conn, topic, "system", system_payload(topic, status, message))

    async def _each_channel(self, frame: Any, *, forget: bool = False) -> None:
        for conn in list(self._conns):
            for topic, chan in list(conn.channels.items()):
                event, payload = frame(chan)
                ref = chan.join_ref if event in ("phx_close", "phx_error") else None
                await self._push(conn, topic, event, payload, ref)
                if forget:
                    conn.channels.pop(topic, None)

    async def _push(
        self, conn: _Conn, topic: str, event: str, payload: Any, ref: str | None = None
    ) -> int:
        if conn.frozen:
            return 0
        frame = {"topic": topic, "event": event, "payload": payload, "ref": ref}
        try:
            await conn.ws.send(json.dumps(frame))
        except ConnectionClosed:
            return 0
        return 1

    def _abort_all(self) -> None:
        conns, self._conns = list(self._conns), set()
        for conn in conns:
            conn.ws.transport.abort()


def _reply(status: str, response: dict[str, Any]) -> dict[str, Any]:
    return {"status": status, "response": response}
