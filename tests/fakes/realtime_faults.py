"""The fault knobs of FakeRealtimeServer that act on live connections (a mixin).

Each one reproduces what a real Supabase Realtime server or network does to the `realtime`
client; the source under test must recover from every one and re-scan after re-subscribing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.realtime_server import _Channel, _Conn


def system_payload(topic: str, status: str, message: str) -> dict[str, Any]:
    """The `system` message Supabase sends about a channel's postgres_changes extension."""
    channel = topic.removeprefix("realtime:")
    return {"channel": channel, "extension": "postgres_changes", "message": message,
            "status": status}  # fmt: skip


class Faults:
    _conns: set[_Conn]
    _each_channel: Callable[..., Coroutine[Any, Any, None]]

    async def drop_connections(self, code: int = 1006) -> None:
        """1006: the TCP connection dies without a close frame; 1000/1001: a clean close."""
        conns, self._conns = list(self._conns), set()  # no more deliveries from here on
        for conn in conns:
            if code == 1006 or conn.frozen:
                conn.ws.transport.abort()
            else:
                async with asyncio.timeout(2):
                    await conn.ws.close(code)

    async def freeze(self) -> None:
        """Half-open: the sockets stay up but the server stops reading, answering pings and
        heartbeats, and sending. (`answer_heartbeats = False` alone changes nothing for the
        client: it ignores heartbeat replies.)"""
        for conn in self._conns:
            conn.frozen = True
            conn.ws.transport.pause_reading()

    async def close_channels(self) -> None:
        """phx_close: the server ended the channel; the client never rejoins a closed one."""
        await self._each_channel(lambda chan: ("phx_close", {}), forget=True)

    async def error_channels(self) -> None:
        """phx_error: the server's channel process crashed."""
        await self._each_channel(lambda chan: ("phx_error", {}), forget=True)

    async def system_error(self, message: str = "Unable to subscribe to changes") -> None:
        """A `system` error about postgres_changes: the client marks the channel errored."""

        def frame(chan: _Channel) -> tuple[str, dict[str, Any]]:
            return "system", system_payload(chan.topic, "error", message)

        await self._each_channel(frame)

    async def kill_reader(self) -> None:
        """A presence_state the client accepts but then crashes on (KeyError on `phx_ref`):
        its reader task dies and the socket stays open, as with any exception in a handler."""
        await self._each_channel(lambda chan: ("presence_state", {"ghost": {"metas": [{}]}}))
