"""One HTTP/2 client connection on asyncio streams and the sans-I/O `h2` library.

It never re-sends anything (aioapns does, after a drop: duplicate rings). A request gets its own
response or an `H2Error` that says whether the server may have processed it (`sent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from dataclasses import dataclass, field

from h2 import events as ev
from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import H2Error as _H2LibError
from hyperframe.frame import Frame, GoAwayFrame

from orchestrator.adapters.push.hpack_memo import memoize_huffman
from orchestrator.logs import get_logger

log = get_logger(__name__)


class H2Error(Exception):
    """`reason` is a short code (never a header value); `sent` = the server may have acted on it."""

    def __init__(self, reason: str, *, sent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent


@dataclass(slots=True)
class Progress:
    """Set once the whole request (END_STREAM) was handed to the socket: from then on a
    timeout means the server may have acted on it."""

    written: bool = False


@dataclass(frozen=True, slots=True)
class H2Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[H2Response]
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)


class _DrainingH2(H2Connection):
    """h2 4.x closes its state machine on GOAWAY and then rejects the responses still due on
    streams <= last_stream_id, which RFC 9113 §6.8 says complete normally. Reading them is what
    keeps a GOAWAY from turning an accepted push into a retried (duplicate) one."""

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Frame], list[ev.Event]]:
        frames, events = super()._receive_goaway_frame(frame)
        self.state_machine.state = ConnectionState.CLIENT_OPEN  # we open no new streams on it
        return frames, events


class H2Conn:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, probe_seconds: float
    ) -> None:
        self._reader, self._writer = reader, writer
        self._probe_seconds = probe_seconds  # a live peer answers a PING within one round trip
        self._h2 = _DrainingH2(H2Configuration(client_side=True, header_encoding="utf-8"))
        memoize_huffman(self._h2.encoder)  # the JWT is not Huffman-coded again per push
        self._streams: dict[int, _Pending] = {}
        self._changed = asyncio.Event()
        self._ping: asyncio.Future[None] | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self.draining = False
        self.closed = False
        self._h2.initiate_connection()
        self._flush()
        self._read_task = asyncio.create_task(self._read_loop())

    @classmethod
    async def open(
        cls, host: str, port: int, context: ssl.SSLContext, probe_seconds: float = 1.0
    ) -> H2Conn:
        try:
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=host
            )
        except (OSError, ssl.SSLError) as exc:
            raise H2Error("connect_failed", sent=False) from exc
        tls = writer.get_extra_info("ssl_object")
        if tls is None or tls.selected_alpn_protocol() != "h2":
            writer.close()
            raise H2Error("no_h2_alpn", sent=False)
        return cls(reader, writer, probe_seconds)

    @property
    def usable(self) -> bool:
        return not (self.closed or self.draining)

    async def request(
        self, headers: list[tuple[str, str]], body: bytes, progress: Progress | None = None
    ) -> H2Response:
        h2 = self._h2
        while self.usable and h2.open_outbound_streams >= h2.remote_settings.max_concurrent_streams:
            await self._changed.wait()
        if not self.usable:
            raise H2Error("connection_closed", sent=False)  # nothing sent: another conn is fine
        sid = h2.get_next_available_stream_id()
        pending = _Pending(asyncio.get_running_loop().create_future())
        self._streams[sid] = pending
        try:
            h2.send_headers(sid, headers)
            view = memoryview(body)
            while not pending.future.done():  # flow control: a push fits one frame normally
                room = min(h2.local_flow_control_window(sid), h2.max_outbound_frame_size)
                if room > 0 or not view:
                    chunk, view = view[:room], view[room:]
                    h2.send_data(sid, bytes(chunk), end_stream=not view)
                    self._flush()
                    if not view:
                        if progress is not None:
                            progress.written = True
                        break
                await self._changed.wait()
            return await pending.future
        except asyncio.CancelledError:
            # Timed out: free the stream, and PING so that a half-open connection is dropped.
            if not self.closed:
                with contextlib.suppress(_H2LibError):
                    h2.reset_stream(sid, ErrorCodes.CANCEL)
                    self._flush()
                if self._probe_task is None or self._probe_task.done():
                    self._probe_task = asyncio.create_task(self._probe())
            raise
        except _H2LibError as exc:
            self.abort("protocol_error")
            raise H2Error("protocol_error", sent=True) from exc
        finally:
            self._streams.pop(sid, None)
            self._notify()

    def abort(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        for pending in self._streams.values():
            if not pending.future.done():
                pending.future.set_exception(H2Error(reason, sent=True))
        self._streams.clear()
        self._notify()
        self._writer.close()

    async def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(_H2LibError, OSError):
                self._h2.close_connection()
                self._flush()
        self.abort("closed")
        for task in (self._read_task, self._probe_task):
            if task is not None:
                task.cancel()
        try:  # a TLS close waits for the peer; a hung peer must not hold up shutdown
            async with asyncio.timeout(1.0):
                await self._writer.wait_closed()
        except (TimeoutError, OSError, ssl.SSLError):
            self._writer.transport.abort()

    async def _read_loop(self) -> None:
        try:
            while data := await self._reader.read(65536):
                for event in self._h2.receive_data(data):
                    self._on_event(event)
                self._flush()
        except (_H2LibError, OSError) as exc:  # SSLError is an OSError
            log.warning("h2_connection_error", error_type=type(exc).__name__)
        self.abort("connection_lost")

    def _on_event(self, event: ev.Event) -> None:
        sid = getattr(event, "stream_id", None)
        pending = self._streams.get(sid) if sid is not None else None
        if isinstance(event, ev.ResponseReceived) and pending:
            pending.headers = {str(k): str(v) for k, v in event.headers or ()}
            pending.status = int(pending.headers.get(":status", "0"))
        elif isinstance(event, ev.DataReceived):
            if pending:
                pending.body.extend(event.data or b"")
            if sid is not None and event.flow_controlled_length:
                self._h2.acknowledge_received_data(event.flow_controlled_length, sid)
        elif isinstance(event, ev.StreamEnded) and pending:
            del self._streams[event.stream_id or 0]
            if not pending.future.done():
                response = H2Response(pending.status, pending.headers, bytes(pending.body))
                pending.future.set_result(response)
        elif isinstance(event, ev.StreamReset) and pending:
            del self._streams[event.stream_id or 0]
            refused = event.error_code == ErrorCodes.REFUSED_STREAM  # never processed
            if not pending.future.done():
                pending.future.set_exception(H2Error("stream_reset", sent=not refused))
        elif isinstance(event, ev.ConnectionTerminated):
            self._on_goaway(event)
        elif isinstance(event, ev.PingAckReceived) and self._ping and not self._ping.done():
            self._ping.set_result(None)
        self._notify()

    def _on_goaway(self, event: ev.ConnectionTerminated) -> None:
        self.draining = True
        last = event.last_stream_id or 0
        code = getattr(event.error_code, "name", str(event.error_code))
        log.info("h2_goaway", error_code=code, in_flight=len(self._streams))
        for sid, pending in list(self._streams.items()):
            if sid > last and not pending.future.done():  # never processed: safe to retry
                pending.future.set_exception(H2Error("goaway", sent=False))

    async def _probe(self) -> None:
        """PING after a timed-out request: a half-open connection is closed, not reused."""
        self._ping = asyncio.get_running_loop().create_future()
        try:
            self._h2.ping(os.urandom(8))
            self._flush()
            async with asyncio.timeout(self._probe_seconds):
                await self._ping
        except (TimeoutError, _H2LibError, OSError):
            self.abort("ping_timeout")
        finally:
            self._ping = None

    def _flush(self) -> None:
        if self.closed:
            return
        if data := self._h2.data_to_send():
            self._writer.write(data)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        if self.draining and not self._streams and not self.closed:
            self.abort("drained")
