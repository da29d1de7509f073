"""OAuth 2 access tokens for FCM HTTP v1 from a service-account file, via google-auth.

google-auth refreshes synchronously, so the refresh runs in a thread (never on the loop), one at
a time (single-flight: concurrent senders share it), and its result is cached until shortly
before expiry. The token URI comes from the file, which is what lets tests use a fake server.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Any

import orjson
from google.auth import exceptions as google_exceptions
from google.auth import transport
from google.oauth2 import service_account

from orchestrator.config import ConfigError
from orchestrator.domain.push import Permanent, PushResult, Retry

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
MARGIN_SECONDS = 300.0  # refresh this long before expiry (google-auth itself uses ~4 min)


class FcmAuthError(Exception):
    """No access token; `result` is what the send returns instead."""

    def __init__(self, result: PushResult) -> None:
        super().__init__(getattr(result, "error", "oauth"))
        self.result = result


class _Response(transport.Response):
    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._status, self._headers, self._data = status, dict(headers), data

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> dict[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


class UrllibRequest(transport.Request):
    """google-auth transport on the standard library (the venv has no `requests`); it runs only
    inside `asyncio.to_thread`. Direct connections, like the FCM and APNs clients: no proxy
    variables are read, so every outbound connection behaves the same."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **_: Any,
    ) -> _Response:
        if not url.startswith(("https://", "http://")):
            raise _transport_error("token_uri must be http(s)")
        request = urllib.request.Request(  # noqa: S310 (scheme checked above)
            url, data=body, headers=dict(headers or {}), method=method
        )
        try:
            with self._opener.open(request, timeout=timeout or self._timeout) as resp:
                return _Response(resp.status, dict(resp.headers.items()), resp.read())
        except urllib.error.HTTPError as exc:
            return _Response(exc.code, dict(exc.headers.items()), exc.read())
        except (urllib.error.URLError, OSError) as exc:
            raise _transport_error("token endpoint unreachable") from exc


class FcmAuth:
    def __init__(
        self,
        service_account_file: str,
        *,
        request_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            with open(service_account_file, "rb") as f:
                info = orjson.loads(f.read())
            self._creds = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=[SCOPE]
            )
        except (OSError, ValueError, KeyError) as exc:  # never echo the file: it holds a key
            raise ConfigError(
                "FCM_SERVICE_ACCOUNT_FILE is not a service-account JSON key file"
            ) from exc
        self.project_id: str = info.get("project_id") or ""
        if not self.project_id:
            raise ConfigError("FCM_SERVICE_ACCOUNT_FILE has no project_id")
        self._transport = UrllibRequest(request_timeout)
        self._clock = clock
        self._token: str | None = None
        self._valid_until = 0.0
        self._refreshing: asyncio.Task[str] | None = None
        self.refreshes = 0

    async def token(self) -> str:
        if self._token is not None and self._clock() < self._valid_until:
            return self._token
        if self._refreshing is None:
            self._refreshing = asyncio.create_task(self._refresh())
            self._refreshing.add_done_callback(_consume)
        # shield: a sender that times out must not cancel the refresh the others wait for
        return await asyncio.shield(self._refreshing)

    def invalidate(self, token: str) -> None:
        """FCM answered 401 to `token`: the next `token()` fetches a new one (once, however
        many senders saw the 401 — only the token still cached is dropped)."""
        if token == self._token:
            self._token = None

    async def _refresh(self) -> str:
        try:
            await asyncio.to_thread(self._creds.refresh, self._transport)
        except google_exceptions.RefreshError as exc:
            retryable = bool(getattr(exc, "retryable", False))
            raise FcmAuthError(
                Retry("oauth_unavailable") if retryable else Permanent("oauth_refused")
            ) from None
        except google_exceptions.TransportError:
            raise FcmAuthError(Retry("oauth_unavailable")) from None
        finally:
            self._refreshing = None
        token = str(self._creds.token)
        expiry = self._creds.expiry  # google-auth's expiry is a naive UTC datetime
        lifetime = expiry.replace(tzinfo=UTC).timestamp() - time.time() if expiry else 3600.0
        self._token = token
        self._valid_until = self._clock() + max(lifetime - min(MARGIN_SECONDS, lifetime / 2), 0)
        self.refreshes += 1
        return token


def _transport_error(text: str) -> Exception:
    error: Exception = google_exceptions.TransportError(text)  # type: ignore[no-untyped-call]
    return error


def _consume(task: asyncio.Task[str]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved here so an unawaited failure does not warn
