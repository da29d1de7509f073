"""`POST /v1/agora/events`: Agora Notifications (NCS) channel events → presence.

Order matters: the size limit and the signature (HMAC-SHA256 of the raw bytes, keyed with
AGORA_NCS_SECRET, constant-time compare) come before any parsing. A notice we cannot use
(malformed, another product, an unknown event type, a channel that is not a call) is answered
200 so that NCS stops retrying, logged, and recorded nowhere. Everything else is written
durably (one transaction, idempotent on noticeId) before the 200; only a failed write is a 503,
so NCS retries it. See docs/presence.md.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from uuid import UUID

import asyncpg
import orjson
from aiohttp import web

from orchestrator.adapters.postgres import ncs_sql
from orchestrator.logs import get_logger
from orchestrator.tokenserver import problems as p
from orchestrator.tokenserver.state import CURRENT, SERVER

log = get_logger("orchestrator.ncs")
NCS_PATH = "/v1/agora/events"
NCS_ROUTE = "agora-events"
SIGNATURE_HEADER = "Agora-Signature-V2"
RTC_PRODUCT_ID = 1  # NCS productId of Agora RTC (channel events)
JOINS = frozenset({103, 105, 107})
LEAVES = frozenset({104, 106, 108})
CHANNEL_EVENTS = frozenset({101, 102})
KNOWN_EVENTS = JOINS | LEAVES | CHANNEL_EVENTS
PARTICIPANT_UIDS = frozenset({1, 2})  # 1 = caller, 2 = callee (the token server's uids)


@dataclass(frozen=True, slots=True)
class NcsLimits:
    """Injectable: NCS waits 10 s for an answer, so the write must give up well before."""

    max_body_bytes: int = 256 * 1024  # a notice is < 2 KB; a 1 MB body is refused (413)
    write_timeout: float = 7.0


NCS_LIMITS = web.AppKey("ncs_limits", NcsLimits)


@dataclass(frozen=True, slots=True)
class Notice:
    notice_id: str
    event_type: int
    notify_ms: int | None
    call_id: UUID
    uid: int | None
    client_seq: int | None
    reason: int | None
    platform: int | None
    payload: bytes  # the payload object, re-serialised (no secrets in it)


def add_routes(app: web.Application, limits: NcsLimits | None = None) -> None:
    app[NCS_LIMITS] = limits or NcsLimits()
    app.router.add_post(NCS_PATH, agora_events, name=NCS_ROUTE)


def signature_ok(secret: str, body: bytes, given: str | None) -> bool:
    if not secret or not given:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    return hmac.compare_digest(expected, given.encode("utf-8", "replace"))


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse(body: bytes) -> Notice | str:
    """The notice, or why it is ignored (a short reason for the log line)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "malformed_json"
    if not isinstance(doc, dict) or not isinstance(doc.get("payload"), dict):
        return "malformed_notice"
    notice_id, payload = doc.get("noticeId"), doc["payload"]
    if not isinstance(notice_id, str) or not 0 < len(notice_id) <= 200:
        return "malformed_notice"
    if _int(doc.get("productId")) != RTC_PRODUCT_ID:
        return "wrong_product"
    event_type = _int(doc.get("eventType"))
    if event_type not in KNOWN_EVENTS:
        return "unknown_event_type"
    channel = payload.get("channelName")
    try:
        call_id = UUID(channel) if isinstance(channel, str) else None
    except ValueError:
        call_id = None
    if call_id is None:
        return "not_a_call"
    uid = _int(payload.get("uid"))
    if event_type in JOINS | LEAVES and uid not in PARTICIPANT_UIDS:
        return "unknown_uid"
    return Notice(
        notice_id=notice_id,
        event_type=event_type,
        notify_ms=_int(doc.get("notifyMs")),
        call_id=call_id,
        uid=uid if event_type in JOINS | LEAVES else None,
        client_seq=_int(payload.get("clientSeq")),
        reason=_int(payload.get("reason")),
        platform=_int(payload.get("platform")),
        payload=orjson.dumps(payload),
    )


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise p.Problem(p.PAYLOAD_TOO_LARGE, f"At most {limit} bytes.", reason="too_large")
    chunks, size = [], 0
    while chunk := await request.content.read(65536):
        size += len(chunk)
        if size > limit:
            raise p.Problem(p.PAYLOAD_TOO_LARGE, f"At most {limit} bytes.", reason="too_large")
        chunks.append(chunk)
    return b"".join(chunks)


async def record(pool: asyncpg.Pool, notice: Notice, timeout: float) -> str:
    outcome: str = await pool.fetchval(
        ncs_sql.RECORD,
        notice.notice_id,
        notice.event_type,
        notice.call_id,
        notice.uid,
        notice.client_seq,
        notice.reason,
        notice.platform,
        notice.payload.decode(),
        timeout=timeout,
    )
    return outcome


async def agora_events(request: web.Request) -> web.Response:
    server, ctx, limits = request.app[SERVER], CURRENT.get(), request.app[NCS_LIMITS]
    counted = server.metrics.ncs_notices
    try:
        body = await _read_body(request, limits.max_body_bytes)
    except p.Problem:
        counted.labels("too_large").inc()
        raise
    secret = server.settings.agora_ncs_secret or ""
    if not signature_ok(secret, body, request.headers.get(SIGNATURE_HEADER)):
        counted.labels("unauthorized").inc()
        reason = "ncs_secret_not_set" if not secret else "bad_signature"
        raise p.Problem(p.UNAUTHORIZED, "Missing or wrong Agora-Signature-V2.", reason=reason)
    notice = parse(body)
    if isinstance(notice, str):
        counted.labels("ignored").inc()
        log.info("ncs_notice_ignored", reason=notice, request_id=ctx.request_id)
        ctx.outcome, ctx.reason = "ignored", notice
        return web.json_response({"ok": True})
    ctx.call_id = str(notice.call_id)
    try:
        outcome = await record(server.pool, notice, limits.write_timeout)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        counted.labels("error").inc()
        raise p.Problem(
            p.UNAVAILABLE, "The notice could not be recorded; retry.", reason=type(exc).__name__
        ) from None
    server.metrics.ncs_write_latency.observe(time.perf_counter() - ctx.started)
    if notice.notify_ms is not None:  # Agora's clock against ours: a trend, not a measure
        lag = time.time() - notice.notify_ms / 1000
        server.metrics.ncs_notice_lag.observe(max(lag, 0.0))
    counted.labels(outcome).inc()
    if outcome in ("unknown_call", "call_ended"):
        log.info("ncs_notice_ignored", reason=outcome, notice_id=notice.notice_id)
    ctx.outcome, ctx.reason = outcome, str(notice.event_type)
    return web.json_response({"ok": True})
