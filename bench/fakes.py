"""The push issue's protocol fakes (tests/fakes), timed on the bench process's monotonic clock.

`TimedFcm` / `TimedApns` stamp every request with `time.monotonic()` as it arrives, before any
work of their own, and resolve whoever waits for that (call_id, kind): the simulated callee's
phone. They keep a bounded tail of the raw requests (a 10-minute soak would otherwise hold every
payload) and the per-(token, call_id, kind) counts from which duplicates are read.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.apns_server import FakeApns
from tests.fakes.fcm_server import FakeFcm
from tests.fakes.keys import (
    APNS_BUNDLE_ID,
    ApnsKey,
    write_apns_key,
    write_service_account,
    write_tls,
)

KEEP_REQUESTS = 2000
Key = tuple[str, str]  # (call_id, kind)


class Arrivals:
    """Arrival times by (call_id, kind), and futures for the callers waiting on one."""

    def __init__(self) -> None:
        self.times: list[tuple[float, str, str]] = []
        self.by_kind: Counter[str] = Counter()
        self._waiters: dict[Key, asyncio.Future[float]] = {}

    def expect(self, call_id: object, kind: str = "ring") -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters[(str(call_id), kind)] = future
        return future

    def forget(self, call_id: object, kind: str = "ring") -> None:
        self._waiters.pop((str(call_id), kind), None)

    def arrived(self, at: float, call_id: str, kind: str) -> None:
        self.times.append((at, call_id, kind))
        self.by_kind[kind] += 1
        future = self._waiters.pop((call_id, kind), None)
        if future is not None and not future.done():
            future.set_result(at)

    def reset(self) -> None:
        self.times.clear()
        self.by_kind.clear()


class TimedFcm(FakeFcm):
    def __init__(self) -> None:
        super().__init__()
        self.arrivals = Arrivals()

    async def _send(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        try:
            body = await request.json()  # cached by aiohttp: the fake reads it again
            data = body["message"]["data"]
            self.arrivals.arrived(at, str(data["call_id"]), str(data["kind"]))
        except (ValueError, KeyError, TypeError):
            pass
        response = await super()._send(request)
        if len(self.requests) > 2 * KEEP_REQUESTS:
            del self.requests[:-KEEP_REQUESTS]
        return response

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.counts.values() if n > 1)

    def reset(self) -> None:
        self.arrivals.reset()
        self.counts.clear()
        self.requests.clear()


class TimedApns(FakeApns):
    def __init__(self, key: ApnsKey, bundle_id: str, cert: Any) -> None:
        super().__init__(key, bundle_id, cert)
        self.arrivals = Arrivals()

    def handle(self, conn: Any, sid: int, h: dict[str, str], raw: bytes) -> str | None:
        at = time.monotonic()
        try:
            body = orjson.loads(raw)
            self.arrivals.arrived(at, str(body["call_id"]), str(body["kind"]))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            pass
        action = super().handle(conn, sid, h, raw)
        if len(self.requests) > 2 * KEEP_REQUESTS:
            del self.requests[:-KEEP_REQUESTS]
        return action

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.counts.values() if n > 1)

    def reset(self) -> None:
        self.arrivals.reset()
        self.counts.clear()
        self.accepted.clear()
        self.requests.clear()


@dataclass
class Fakes:
    """Both fakes, their credentials, and the environment a worker needs to use them."""

    fcm: TimedFcm
    apns: TimedApns
    folder: Path

    @classmethod
    async def start(cls) -> Fakes:
        folder = Path(tempfile.mkdtemp(prefix="orchestrator-bench-"))
        fcm = await TimedFcm().start()
        fcm.account = write_service_account(folder, fcm.token_uri)
        key = write_apns_key(folder)
        _, cert, _ = write_tls(folder)
        apns = await TimedApns(key, APNS_BUNDLE_ID, cert).start()
        return cls(fcm, apns, folder)

    def route(self, pair: Any) -> Arrivals:
        """The fake that rings this pair's callee: APNs for iOS, FCM for Android."""
        return self.apns.arrivals if pair.platform == "ios" else self.fcm.arrivals

    def duplicates(self) -> int:
        return self.fcm.duplicates() + self.apns.duplicates()

    def fcm_env(self) -> dict[str, str]:
        assert self.fcm.account is not None
        return {
            "FCM_SERVICE_ACCOUNT_FILE": str(self.fcm.account.path),
            "FCM_ENDPOINT": self.fcm.base_url,
        }

    def apns_env(self) -> dict[str, str]:
        host, port = self.apns.endpoint
        return {
            "APNS_KEY_FILE": str(self.apns.key.path),
            "APNS_KEY_ID": self.apns.key.key_id,
            "APNS_TEAM_ID": self.apns.key.team_id,
            "APNS_BUNDLE_ID": APNS_BUNDLE_ID,
            "APNS_ENDPOINT": f"{host}:{port}",
            "APNS_CA_FILE": str(self.folder / "test-ca.pem"),
        }

    def push_env(self) -> dict[str, str]:
        return {"PUSH_DRY_RUN": "0", **self.fcm_env(), **self.apns_env()}

    def reset(self) -> None:
        self.fcm.reset()
        self.apns.reset()

    async def close(self) -> None:
        await self.fcm.close()
        await self.apns.close()
        shutil.rmtree(self.folder, ignore_errors=True)
