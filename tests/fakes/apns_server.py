"""A fake APNs: real HTTP/2 over TLS (h2 + trustme), checking what Apple checks.

Behaviour by device-token prefix (hex-encoded, tests/fakes/tokens.py): ok, bad (400
BadDeviceToken), gone (410 Unregistered), notopic (400 DeviceTokenNotForTopic), throttle
(429), error (500), unavailable (503), expired (403 ExpiredProviderToken for the first JWT
seen with it, then 200), hang (never answers), slow (answers only when the connection drains
after a GOAWAY), goaway (GOAWAY with last_stream_id below this stream, then drains and
closes), drop (closes the TCP connection).
Any other prefix: 400 BadDeviceToken. `fail_every = N` answers every Nth request 503.

Ambiguous failures (`ambiguous = 0.1`: that share of well-formed requests, in turn): `late`
processes the request and answers 200 only after `late_seconds` (after the client's timeout),
`drop` processes it and closes the TCP connection without answering, `goaway` processes it and
sends GOAWAY with last_stream_id = this stream (it may have been processed) and closes. Each
is counted in `counts` (it reached the provider) and in `ambiguous_counts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
import trustme
from h2 import events as ev
from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from tests.fakes.apns_checks import check_request
from tests.fakes.keys import ApnsKey
from tests.fakes.tokens import behaviour


@dataclass
class Received:
    token: str
    headers: dict[str, str]
    body: Any
    jwt: str
    connection: int
    status: int | None = None  # None: not answered (hang, slow, goaway, drop)
    reason: str | None = None


class FakeApns:
    def __init__(self, key: ApnsKey, bundle_id: str, cert: trustme.LeafCert) -> None:
        self.key, self.bundle_id = key, bundle_id
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self._ssl)
        self._ssl.set_alpn_protocols(["h2"])
        self.requests: list[Received] = []
        self.counts: Counter[tuple[str, str, str]] = Counter()  # (token, call_id, kind) received
        self.accepted: Counter[tuple[str, str, str]] = Counter()  # ... answered 200
        self.fail_every: int | None = None
        self.ambiguous = 0.0
        self.late_seconds = 1.0
        self.ambiguous_modes = ("late", "drop", "goaway")
        self.ambiguous_counts: Counter[str] = Counter()
        self._random = random.Random(12)
        self.max_streams = 1000
        self.connections = 0
        self._conns: list[_Conn] = []
        self._rejected_jwts: set[str] = set()
        self._expired_seen: set[str] = set()
        self._arrived = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def start(self) -> FakeApns:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._ssl)
        return self

    @property
    def endpoint(self) -> tuple[str, int]:
        assert self._server is not None
        return "127.0.0.1", self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for conn in self._conns:
            conn.writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait_requests(self, n: int) -> None:
        while len(self.requests) < n:
            await self._arrived.wait()

    def freeze_connections(self) -> None:
        """The current connections go silent (half-open): no responses, no PING answers."""
        for conn in self._conns:
            conn.frozen = True

    def expire_jwts(self) -> None:
        """Every JWT seen so far is now answered 403 ExpiredProviderToken (as after 60 min)."""
        self._rejected_jwts.update(r.jwt for r in self.requests)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = _Conn(self, self.connections, reader, writer)
        self._conns.append(conn)
        await conn.run()

    def handle(self, conn: _Conn, sid: int, h: dict[str, str], raw: bytes) -> str | None:
        """Answer one request on `conn`; returns a connection action: goaway, drop or None."""
        token = h.get(":path", "").removeprefix("/3/device/")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        auth = h.get("authorization", "")
        rec = Received(token, h, body, auth.removeprefix("bearer "), conn.number)
        self.requests.append(rec)
        self._arrived.set()
        self._arrived = asyncio.Event()
        prefix = behaviour(token)
        if prefix in ("goaway", "drop"):
            return prefix  # never processed
        fields = body if isinstance(body, dict) else {}
        key = (token, str(fields.get("call_id", "")), str(fields.get("kind", "")))
        self.counts[key] += 1
        problem = check_request(h, raw, body, self.key, self.bundle_id, self._rejected_jwts)
        answer = problem or self._behaviour(prefix, token, rec.jwt)
        if answer == (200, "") and self.ambiguous and self._random.random() < self.ambiguous:
            modes = self.ambiguous_modes
            mode = modes[sum(self.ambiguous_counts.values()) % len(modes)]
            if mode == "drop" and conn.busy(sid):
                mode = "goaway"  # a drop would take other answered-to-be streams with it
            self.ambiguous_counts[mode] += 1
            self.accepted[key] += 1  # processed: Apple delivers it, the client cannot know
            if mode == "late":
                conn.respond_later(sid, self.late_seconds, h.get("apns-id"))
                return None
            return f"ambiguous_{mode}"
        if answer is not None:
            rec.status, rec.reason = answer
            if answer[0] == 200:
                self.accepted[key] += 1
            conn.respond(sid, answer[0], answer[1], h.get("apns-id"))
        elif prefix == "slow":
            conn.slow.append((sid, rec, key))
        return None

    def _behaviour(self, prefix: str, token: str, jwt_used: str) -> tuple[int, str] | None:
        if self.fail_every and len(self.requests) % self.fail_every == 0:
            return 503, "ServiceUnavailable"
        if prefix == "expired" and token not in self._expired_seen:
            self._expired_seen.add(token)
            self._rejected_jwts.add(jwt_used)
            return 403, "ExpiredProviderToken"
        return {
            "ok": (200, ""),
            "expired": (200, ""),
            "bad": (400, "BadDeviceToken"),
            "gone": (410, "Unregistered"),
            "notopic": (400, "DeviceTokenNotForTopic"),
            "throttle": (429, "TooManyRequests"),
            "error": (500, "InternalServerError"),
            "unavailable": (503, "ServiceUnavailable"),
        }.get(prefix, (400, "BadDeviceToken") if prefix not in ("hang", "slow") else None)


class _Conn:
    def __init__(
        self, fake: FakeApns, number: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        self.fake, self.number, self.reader, self.writer = fake, number, reader, w
        self.h2 = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.frozen = False
        self.slow: list[tuple[int, Received, tuple[str, str, str]]] = []
        self.pending_late = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._streams: dict[int, tuple[dict[str, str], bytearray]] = {}

    async def run(self) -> None:
        self.h2.initiate_connection()
        self.h2.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: self.fake.max_streams})
        self.writer.write(self.h2.data_to_send())
        action = None
        try:
            while not action and (data := await self.reader.read(65536)):
                if self.frozen:
                    continue
                for event in self.h2.receive_data(data):
                    if action := self._on_event(event):
                        break
                self.writer.write(self.h2.data_to_send())
        except OSError:
            pass
        if action == "ambiguous_drop":
            await self._linger()
        if action in ("goaway", "ambiguous_goaway"):  # let the GOAWAY (and drained) reach it
            self.writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(self.writer.wait_closed(), 1)
        self.writer.transport.abort()

    def _on_event(self, event: ev.Event) -> str | None:
        if isinstance(event, ev.RequestReceived) and event.stream_id:
            self._streams[event.stream_id] = (
                {str(k): str(v) for k, v in event.headers or ()},
                bytearray(),
            )
        elif isinstance(event, ev.DataReceived) and event.stream_id:
            self._streams[event.stream_id][1].extend(event.data or b"")
            self.h2.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
        elif isinstance(event, ev.StreamEnded) and event.stream_id in self._streams:
            headers, body = self._streams.pop(event.stream_id)
            action = self.fake.handle(self, event.stream_id, headers, bytes(body))
            if action == "goaway":
                self._goaway(event.stream_id)
            elif action == "ambiguous_goaway":
                # Streams below this one not yet fully received were never processed: refuse
                # them (REFUSED_STREAM) rather than let the GOAWAY claim them too.
                for partial in list(self._streams):
                    with contextlib.suppress(Exception):
                        self.h2.reset_stream(partial, ErrorCodes.REFUSED_STREAM)
                self._streams.clear()
                self.h2.close_connection(last_stream_id=event.stream_id)  # covers this stream
                self.h2.state_machine.state = ConnectionState.SERVER_OPEN
            return action
        return None

    def busy(self, sid: int) -> bool:
        """Another stream is open (received, or not yet answered) on this connection."""
        return any(s != sid for s in self._streams) or bool(self.slow) or self.pending_late > 0

    def respond_later(self, sid: int, delay: float, apns_id: str | None) -> None:
        async def later() -> None:
            await asyncio.sleep(delay)
            self.pending_late -= 1
            with contextlib.suppress(Exception):  # the client has reset the stream by now
                self.respond(sid, 200, "", apns_id)
                self.writer.write(self.h2.data_to_send())

        self.pending_late += 1
        self._tasks.add(asyncio.get_running_loop().create_task(later()))

    async def _linger(self) -> None:
        """Before the drop: whatever the client still writes is refused (REFUSED_STREAM, never
        processed), so that only this one request is in doubt."""
        with contextlib.suppress(OSError, TimeoutError):
            while data := await asyncio.wait_for(self.reader.read(65536), 0.02):
                for event in self.h2.receive_data(data):
                    if isinstance(event, ev.RequestReceived) and event.stream_id:
                        with contextlib.suppress(Exception):
                            self.h2.reset_stream(event.stream_id, ErrorCodes.REFUSED_STREAM)
                self.writer.write(self.h2.data_to_send())

    def respond(self, sid: int, status: int, reason: str, apns_id: str | None) -> None:
        headers = [(":status", str(status)), ("apns-id", apns_id or str(uuid.uuid4()).upper())]
        if status == 200:
            self.h2.send_headers(sid, headers, end_stream=True)
            return
        body: dict[str, Any] = {"reason": reason}
        if status == 410:
            body["timestamp"] = int(time.time() * 1000)
        data = orjson.dumps(body)
        self.h2.send_headers(sid, [*headers, ("content-type", "application/json")])
        self.h2.send_data(sid, data, end_stream=True)

    def _goaway(self, sid: int) -> None:
        """Graceful shutdown: streams below `sid` still complete (RFC 9113 §6.8), `sid` not."""
        self.h2.close_connection(
            last_stream_id=max(sid - 2, 0), additional_data=b'{"reason":"Shutdown"}'
        )
        self.h2.state_machine.state = ConnectionState.SERVER_OPEN  # h2 would refuse to answer
        for slow_sid, rec, key in self.slow:
            self.respond(slow_sid, 200, "", rec.headers.get("apns-id"))
            rec.status = 200
            self.fake.accepted[key] += 1
        self.slow.clear()
