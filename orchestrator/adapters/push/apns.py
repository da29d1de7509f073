"""APNs provider: token auth, HTTP/2 over TLS, one multiplexed connection per host.

A thin client on `h2` rather than aioapns (see the README's Push delivery section): every send has a
deadline; a failure that certainly did not reach Apple (connect error, GOAWAY above our stream,
REFUSED_STREAM) is a `Retry`, one that may have (timeout after the request was written, the
connection lost after it, GOAWAY covering it) is `Uncertain`; nothing that may have reached Apple
is ever re-sent behind the engine's back.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from uuid import uuid5

from orchestrator.adapters.push.apns_jwt import ProviderToken
from orchestrator.adapters.push.apns_payload import (
    ApnsRequest,
    PayloadTooLarge,
    apns_result,
    build_apns_request,
    parse_reason,
    parse_retry_after,
)
from orchestrator.adapters.push.h2conn import H2Conn, H2Error, H2Response, Progress
from orchestrator.config import ConfigError, Settings
from orchestrator.domain.model import PushKind
from orchestrator.domain.push import Permanent, PushMessage, PushResult, Retry, Uncertain
from orchestrator.domain.tokens import apns_token_ok
from orchestrator.logs import exception_fields, get_logger

log = get_logger(__name__)

APNS_HOSTS: Mapping[str, tuple[str, int]] = {
    "production": ("api.push.apple.com", 443),
    "sandbox": ("api.sandbox.push.apple.com", 443),
}


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()  # system trust store, hostname checks on
    if ca_file:
        context.load_verify_locations(cafile=ca_file)  # in addition to, not instead of
    context.set_alpn_protocols(["h2"])
    return context


class HostClient:
    """The connection to one APNs host, replaced when it closes or receives GOAWAY."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, timeout: float) -> None:
        self.host, self.port = host, port
        # PING deadline after a timed-out request: well inside the next request's timeout.
        self._probe_seconds = min(1.0, timeout / 2)
        self.authority = host if port == 443 else f"{host}:{port}"
        self._context = context
        self._conn: H2Conn | None = None
        self._old: set[H2Conn] = set()  # draining: they close themselves once empty
        self._lock = asyncio.Lock()

    async def request(
        self, headers: list[tuple[str, str]], body: bytes, progress: Progress | None = None
    ) -> H2Response:
        # A second connection only for a request that never reached the server: GOAWAY'd above
        # last_stream_id, refused, or queued behind a closing connection (RFC 9113 §8.7).
        for attempt in range(2):
            conn = await self._connection()
            if progress is not None:
                progress.written = False  # the attempt before was never processed
            try:
                return await conn.request(headers, body, progress)
            except H2Error as exc:
                if exc.sent or attempt == 1:
                    raise
        raise AssertionError("unreachable")

    async def _connection(self) -> H2Conn:
        conn = self._conn
        if conn is not None and conn.usable:
            return conn
        async with self._lock:  # one connect at a time; the others reuse its connection
            if self._conn is None or not self._conn.usable:
                if self._conn is not None and not self._conn.closed:
                    self._old.add(self._conn)
                self._old = {c for c in self._old if not c.closed}
                self._conn = await H2Conn.open(
                    self.host, self.port, self._context, self._probe_seconds
                )
            return self._conn

    async def close(self) -> None:
        for conn in (self._conn, *self._old):
            if conn is not None:
                await conn.close()
        self._conn, self._old = None, set()


class ApnsProvider:
    name = "apns"

    def __init__(
        self,
        settings: Settings,
        *,
        token: ProviderToken | None = None,
        hosts: Mapping[str, tuple[str, int]] = APNS_HOSTS,
    ) -> None:
        if not settings.apns_configured:
            raise ConfigError("APNs needs APNS_KEY_FILE, APNS_KEY_ID, APNS_TEAM_ID, APNS_BUNDLE_ID")
        self._bundle = str(settings.apns_bundle_id)
        self._token = token or ProviderToken.from_file(
            str(settings.apns_key_file), str(settings.apns_key_id), str(settings.apns_team_id)
        )
        self._timeout = settings.push_timeout_seconds
        self._endpoint = settings.apns_endpoint
        self._default_env = "sandbox" if settings.apns_use_sandbox else "production"
        self._hosts = dict(hosts)
        self._context = tls_context(settings.apns_ca_file)
        self._clients: dict[tuple[str, int], HostClient] = {}

    def endpoint_for(self, environment: str | None) -> tuple[str, int]:
        """APNS_ENDPOINT if set; else the environment the device registered in; else the
        APNS_USE_SANDBOX default."""
        if self._endpoint is not None:
            return self._endpoint
        return self._hosts[environment if environment in self._hosts else self._default_env]

    def client_for(self, environment: str | None) -> HostClient:
        host, port = self.endpoint_for(environment)
        client = self._clients.get((host, port))
        if client is None:
            client = self._clients[(host, port)] = HostClient(
                host, port, self._context, self._timeout
            )
        return client

    async def send(self, message: PushMessage) -> PushResult:
        if message.kind is PushKind.STOP:
            return Permanent("no_stop_on_ios", prune=False)  # iOS ends CallKit itself
        device = message.target_token
        if not device:
            return Permanent("missing_token", prune=False)
        if not apns_token_ok(device):  # it would become part of the :path
            return Permanent("invalid_token", prune=False)
        try:
            request = build_apns_request(message, self._bundle)
        except PayloadTooLarge:
            return Permanent("PayloadTooLarge", prune=False)
        # Deterministic: a resend after a crash carries the same apns-id (traceable at Apple).
        apns_id = str(uuid5(message.call_id, f"{message.kind.value}/{message.delivery_id}"))
        client = self.client_for(message.apns_environment)
        progress = Progress()
        try:
            async with asyncio.timeout(self._timeout):
                return await self._send(client, request, device, apns_id, progress)
        except TimeoutError:
            # Written and unanswered: Apple may have it. Not written: safe to send again.
            return Uncertain("timeout") if progress.written else Retry("timeout")
        except H2Error as exc:
            return Uncertain(exc.reason) if exc.sent else Retry(exc.reason)
        except Exception as exc:  # the port's promise: never raise for provider trouble
            log.error("apns_send_error", **exception_fields(exc))
            return Uncertain("internal_error") if progress.written else Retry("internal_error")

    async def _send(
        self,
        client: HostClient,
        request: ApnsRequest,
        device: str,
        apns_id: str,
        progress: Progress,
    ) -> PushResult:
        for attempt in range(2):
            jwt = self._token.current()
            headers = request.headers(client.authority, device, apns_id, jwt)
            progress.written = False  # a 403 re-mint is a new request
            response = await client.request(headers, request.payload, progress)
            reason = parse_reason(response.body)
            if response.status == 403 and reason == "ExpiredProviderToken" and attempt == 0:
                self._token.invalidate(jwt)  # rejected, so not delivered: one retry is safe
                continue
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            return apns_result(
                response.status, reason, response.headers.get("apns-id"), retry_after
            )
        raise AssertionError("unreachable")

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
