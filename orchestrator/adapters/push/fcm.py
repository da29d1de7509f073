"""FCM HTTP v1 provider: one POST per message on one shared aiohttp session (keep-alive)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from orchestrator.adapters.push.fcm_auth import FcmAuth, FcmAuthError
from orchestrator.adapters.push.fcm_payload import build_fcm_message, fcm_result, parse_retry_after
from orchestrator.config import ConfigError, Settings
from orchestrator.domain.push import Permanent, PushMessage, PushResult, Retry, Uncertain
from orchestrator.domain.tokens import fcm_token_ok
from orchestrator.logs import exception_fields, get_logger

log = get_logger(__name__)


class _Progress:
    """Set by aiohttp's trace hook once the request's headers went out on the socket."""

    def __init__(self) -> None:
        self.written = False


async def _on_headers_sent(
    _: aiohttp.ClientSession, context: Any, __: aiohttp.TraceRequestHeadersSentParams
) -> None:
    progress = context.trace_request_ctx
    if isinstance(progress, _Progress):
        progress.written = True


def _trace() -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()
    config.on_request_headers_sent.append(_on_headers_sent)
    return config


class FcmProvider:
    name = "fcm"

    def __init__(self, settings: Settings, *, auth: FcmAuth | None = None) -> None:
        if not settings.fcm_service_account_file:
            raise ConfigError("FCM needs FCM_SERVICE_ACCOUNT_FILE")
        self._auth = auth or FcmAuth(settings.fcm_service_account_file)
        self._url = (
            f"{settings.fcm_endpoint.rstrip('/')}/v1/projects/{self._auth.project_id}/messages:send"
        )
        self._timeout = settings.push_timeout_seconds
        self._limit = settings.push_concurrency
        self._session: aiohttp.ClientSession | None = None

    @property
    def auth(self) -> FcmAuth:
        return self._auth

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: a ClientSession belongs to the running loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit),
                raise_for_status=False,
                trace_configs=[_trace()],
            )
        return self._session

    async def send(self, message: PushMessage) -> PushResult:
        device = message.target_token
        if not device:
            return Permanent("missing_token", prune=False)
        if not fcm_token_ok(device):
            return Permanent("invalid_token", prune=False)
        body = orjson.dumps(build_fcm_message(message, device, datetime.now(UTC)))
        progress = _Progress()
        try:
            # One deadline over token, request and the 401 retry: the port's promise.
            async with asyncio.timeout(self._timeout):
                return await self._send(body, progress)
        except TimeoutError:
            # After the request went out, Google may have it: uncertain, not a plain retry.
            return Uncertain("timeout") if progress.written else Retry("timeout")
        except FcmAuthError as exc:
            return exc.result
        except aiohttp.ClientConnectorError:
            return Retry("connection_error")  # never connected: nothing was sent
        except (aiohttp.ClientError, OSError):
            if progress.written:
                return Uncertain("connection_lost")
            return Retry("connection_error")
        except Exception as exc:  # never raise for provider trouble
            log.error("fcm_send_error", **exception_fields(exc))
            return Uncertain("internal_error") if progress.written else Retry("internal_error")

    async def _send(self, body: bytes, progress: _Progress) -> PushResult:
        session = self._client()
        for attempt in range(2):
            access = await self._auth.token()
            headers = {"Authorization": f"Bearer {access}", "Content-Type": "application/json"}
            progress.written = False  # the 401 before was an answer: not delivered
            async with session.post(
                self._url, data=body, headers=headers, trace_request_ctx=progress
            ) as response:
                raw = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
            if status == 401 and attempt == 0:
                self._auth.invalidate(access)  # rejected, so not delivered: one retry is safe
                continue
            return fcm_result(status, raw, parse_retry_after(retry_after, datetime.now(UTC)))
        return Retry("http_401")  # unreachable: the loop returns on the second attempt

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
