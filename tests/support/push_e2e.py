"""End-to-end push support: the fake APNs (HTTP/2 + TLS) and fake FCM (+ OAuth) on real sockets,
their credential files, and the real worker building the REAL providers from its environment.

The fakes are the protocol fakes of tests/fakes, plus per-token scripts ("answer 429, then behave
as the token's prefix says") so that a delivery can be retried and then succeed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.metrics import Metrics
from orchestrator.worker import WorkerHooks
from tests.fakes.apns_server import FakeApns
from tests.fakes.fcm_server import ERRORS, FakeFcm, Sent
from tests.fakes.keys import (
    APNS_BUNDLE_ID,
    APNS_KEY_ID,
    APNS_TEAM_ID,
    write_apns_key,
    write_service_account,
    write_tls,
)
from tests.fakes.tokens import hex_token
from tests.support.worker import started_worker, worker_settings

Key = tuple[str, str, str]  # (device token, call_id, kind) as the fakes count them
HANG = None  # a scripted APNs answer: never answer this request


class ScriptedApns(FakeApns):
    """FakeApns whose tokens can be given a script of answers first: (status, reason), or HANG."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scripts: dict[str, deque[tuple[int, str] | None]] = defaultdict(deque)
        self.arrivals: dict[str, list[float]] = defaultdict(list)  # monotonic, checked requests

    def script(self, token: str, *answers: tuple[int, str] | None) -> None:
        self.scripts[token].extend(answers)

    def _behaviour(self, prefix: str, token: str, jwt_used: str) -> tuple[int, str] | None:
        self.arrivals[token].append(time.monotonic())
        queue = self.scripts.get(token)
        if queue:
            return queue.popleft()
        return super()._behaviour(prefix, token, jwt_used)

    def answered(self, token: str) -> list[tuple[int | None, str | None]]:
        return [(r.status, r.reason) for r in self.requests if r.token == token]


class ScriptedFcm(FakeFcm):
    """FakeFcm whose tokens can be given a script of error prefixes first (see ERRORS)."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: dict[str, deque[str]] = defaultdict(deque)
        self.arrivals: dict[str, list[float]] = defaultdict(list)

    def script(self, token: str, *prefixes: str) -> None:
        self.scripts[token].extend(prefixes)

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.json()  # aiohttp caches the body: the parent reads it again
        message = body.get("message", {}) if isinstance(body, dict) else {}
        token = str(message.get("token", ""))
        self.arrivals[token].append(time.monotonic())
        queue = self.scripts.get(token)
        if not queue:
            return await super()._send(request)
        data = message.get("data", {})
        sent = Sent(token, message, request.headers.get("Authorization", ""))
        self.requests.append(sent)
        self.counts[(token, str(data.get("call_id")), str(data.get("kind")))] += 1
        return self._error(sent, *ERRORS[queue.popleft()])

    @property
    def accepted(self) -> Counter[Key]:
        found: Counter[Key] = Counter()
        for sent in self.requests:
            if sent.status == 200:
                data = sent.message.get("data", {})
                found[(sent.token, str(data.get("call_id")), str(data.get("kind")))] += 1
        return found

    def answered(self, token: str) -> list[int | None]:
        return [s.status for s in self.requests if s.token == token]


@dataclass
class PushFakes:
    apns: ScriptedApns
    fcm: ScriptedFcm
    env: dict[str, str]  # the worker's variables: real providers pointed at the fakes

    def accepted(self) -> Counter[Key]:
        """Requests answered 200, per (token, call_id, kind), at both fakes."""
        return self.apns.accepted + self.fcm.accepted

    @property
    def request_count(self) -> int:
        return len(self.apns.requests) + len(self.fcm.requests)


@asynccontextmanager
async def push_fakes(directory: Path, *, push_timeout: float = 0.5) -> AsyncIterator[PushFakes]:
    """Both fakes on 127.0.0.1, with a .p8 key, a trustme CA and a service-account file (whose
    token_uri is the fake OAuth endpoint) written to `directory`."""
    key = write_apns_key(directory)
    _, cert, ca_file = write_tls(directory)
    apns = await ScriptedApns(key, APNS_BUNDLE_ID, cert).start()
    fcm = await ScriptedFcm().start()
    try:
        fcm.account = write_service_account(directory, fcm.token_uri)
        host, port = apns.endpoint
        env = {
            "APNS_KEY_FILE": str(key.path),
            "APNS_KEY_ID": APNS_KEY_ID,
            "APNS_TEAM_ID": APNS_TEAM_ID,
            "APNS_BUNDLE_ID": APNS_BUNDLE_ID,
            "APNS_ENDPOINT": f"{host}:{port}",
            "APNS_CA_FILE": str(ca_file),
            "FCM_SERVICE_ACCOUNT_FILE": str(fcm.account.path),
            "FCM_ENDPOINT": fcm.base_url,
            "PUSH_DRY_RUN": "0",
            "PUSH_TIMEOUT_SECONDS": str(push_timeout),
        }
        yield PushFakes(apns, fcm, env)
    finally:
        await apns.close()
        await fcm.close()


@dataclass
class RealWorker:
    hooks: WorkerHooks
    metrics: Metrics
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The worker's own /metrics page, parsed: {(sample name, sorted labels): value}."""
        url = f"http://127.0.0.1:{self.hooks.metrics_port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200
            text = await response.text()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


@asynccontextmanager
async def real_worker(dsn: str, fakes: PushFakes, **env: str) -> AsyncIterator[RealWorker]:
    """The real worker in-process (short timers) with `providers=None`: build_providers builds
    the real APNs and FCM providers from the environment, pointed at the fakes."""
    metrics = Metrics()
    hooks = WorkerHooks(providers=None, metrics=metrics)
    settings = worker_settings(dsn, **{**fakes.env, **env})
    async with started_worker(settings, hooks) as (stop, task):
        yield RealWorker(hooks, metrics, stop, task)


def unique(prefix: str) -> str:
    """A device token the fakes answer by its prefix (tokens are unique in push_devices), in a
    format both APNs (hex) and FCM accept."""
    return hex_token(prefix)


async def ios_device(
    conn: asyncpg.Connection, user: uuid.UUID, voip: str, alert: str | None = None
) -> uuid.UUID:
    device_id: uuid.UUID = await conn.fetchval(
        "insert into public.push_devices (user_id, platform, token, voip_token)"
        " values ($1, 'ios', $2, $3) returning id",
        user,
        alert,
        voip,
    )
    return device_id


async def android_device(conn: asyncpg.Connection, user: uuid.UUID, token: str) -> uuid.UUID:
    device_id: uuid.UUID = await conn.fetchval(
        "insert into public.push_devices (user_id, platform, token) values ($1, 'android', $2)"
        " returning id",
        user,
        token,
    )
    return device_id


async def users(conn: asyncpg.Connection, n: int) -> list[uuid.UUID]:
    rows = await conn.fetch(
        "insert into auth.users (email) select gen_random_uuid() || '@example.test'"
        " from generate_series(1, $1) returning id",
        n,
    )
    return [r["id"] for r in rows]


# The key the fakes count a delivery under: the token its platform and kind are sent to.
DELIVERY_KEYS = """
select d.id, d.call_id, d.kind, d.status, d.attempts, d.provider, d.last_error, d.sent_at,
       c.ring_deadline,
       case when v.platform = 'ios' and d.kind = 'ring' then v.voip_token else v.token end
         as target
from public.push_deliveries d
join public.calls c on c.id = d.call_id
join public.push_devices v on v.id = d.device_id
where d.call_id = any($1::uuid[])
order by d.id
"""


async def delivery_keys(
    conn: asyncpg.Connection, calls: list[uuid.UUID]
) -> dict[Key, asyncpg.Record]:
    rows = await conn.fetch(DELIVERY_KEYS, calls)
    found = {(r["target"], str(r["call_id"]), r["kind"]): r for r in rows}
    assert len(found) == len(rows), "two deliveries map to one (token, call, kind)"
    return found


async def nothing_pending(conn: asyncpg.Connection, calls: list[uuid.UUID]) -> bool:
    return bool(
        await conn.fetchval(
            "select not exists (select 1 from public.push_deliveries"
            " where call_id = any($1::uuid[]) and status = 'pending')",
            calls,
        )
    )
