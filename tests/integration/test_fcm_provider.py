"""The real FCM provider (google-auth OAuth + aiohttp) against the fake FCM on real sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.adapters.push.fcm import FcmProvider
from orchestrator.adapters.push.fcm_auth import FcmAuth
from orchestrator.config import Settings
from orchestrator.domain.model import EndReason, PushKind
from orchestrator.domain.push import Accepted, Permanent, Retry, Uncertain
from tests.fakes.fcm_server import FakeFcm
from tests.fakes.keys import write_service_account
from tests.fakes.messages import android

TIMEOUT = 0.5


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Fcm:
    fake: FakeFcm
    provider: FcmProvider
    auth: FcmAuth
    clock: Clock
    settings: Settings


@pytest.fixture
async def fcm(tmp_path: Path) -> AsyncIterator[Fcm]:
    fake = await FakeFcm().start()
    fake.account = write_service_account(tmp_path, fake.token_uri)
    settings = Settings(
        fcm_service_account_file=str(fake.account.path),
        fcm_endpoint=fake.base_url,
        push_timeout_seconds=TIMEOUT,
    )
    clock = Clock()
    auth = FcmAuth(str(fake.account.path), clock=clock)
    provider = FcmProvider(settings, auth=auth)
    yield Fcm(fake, provider, auth, clock, settings)
    await provider.close()
    await fake.close()


async def test_ring_is_a_high_priority_data_message_living_until_the_deadline(fcm: Fcm) -> None:
    message = android(PushKind.RING, "ok-ring", expires_in=30, seq=7)
    result = await fcm.provider.send(message)
    assert isinstance(result, Accepted)
    assert result.provider_message_id and result.provider_message_id.startswith("projects/")
    [sent] = fcm.fake.requests
    assert sent.token == "ok-ring"
    assert "notification" not in sent.message and "notification" not in sent.message["android"]
    assert sent.message["android"]["priority"] == "high"
    assert sent.message["android"]["ttl"] in ("29s", "30s")
    data = sent.message["data"]
    assert all(isinstance(v, str) for v in data.values())
    assert data["kind"] == "ring" and data["seq"] == "7" and data["video"] == "true"
    assert data["call_id"] == str(message.call_id)
    assert data["expires_at"].endswith("Z") and data["caller_name"] == "Ada Lovelace"


async def test_an_expired_ring_has_ttl_zero(fcm: Fcm) -> None:
    await fcm.provider.send(android(PushKind.RING, "ok-late", expires_in=-5))
    assert fcm.fake.requests[0].message["android"]["ttl"] == "0s"


async def test_stop_is_a_data_message_with_the_end_reason_for_60s(fcm: Fcm) -> None:
    message = android(PushKind.STOP, "ok-stop", end_reason=EndReason.CANCELLED)
    assert isinstance(await fcm.provider.send(message), Accepted)
    sent = fcm.fake.requests[0].message
    assert sent["android"]["ttl"] == "60s"
    assert sent["data"]["kind"] == "stop" and sent["data"]["end_reason"] == "cancelled"


async def test_missed_is_a_localised_notification_plus_data_for_24h(fcm: Fcm) -> None:
    message = android(PushKind.MISSED, "ok-missed", video=False)
    assert isinstance(await fcm.provider.send(message), Accepted)
    sent = fcm.fake.requests[0].message
    assert sent["android"]["ttl"] == "86400s"
    notification = sent["android"]["notification"]
    assert notification["title_loc_key"] == "missed_call_title"
    assert notification["body_loc_key"] == "missed_call"
    assert notification["body_loc_args"] == ["Ada Lovelace"]
    assert sent["data"]["kind"] == "missed" and sent["data"]["video"] == "false"


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("unregistered-1", Permanent("UNREGISTERED", prune=True)),
        ("invalid-1", Permanent("INVALID_ARGUMENT", prune=True)),
        ("mismatch-1", Permanent("SENDER_ID_MISMATCH", prune=True)),
        ("other-1", Permanent("INVALID_ARGUMENT", prune=False)),
        ("throttle-1", Retry("QUOTA_EXCEEDED", retry_after=1.0)),
        ("unavailable-1", Retry("UNAVAILABLE")),
    ],
)
async def test_error_mapping_and_no_hidden_resend(fcm: Fcm, token: str, expected: object) -> None:
    message = android(PushKind.RING, token)
    assert await fcm.provider.send(message) == expected
    assert fcm.fake.counts[(token, str(message.call_id), "ring")] == 1


async def test_a_hung_request_is_uncertain_within_the_timeout(fcm: Fcm) -> None:
    await fcm.provider.send(android(PushKind.RING, "ok-warm"))  # token fetched beforehand
    started = time.monotonic()
    assert await fcm.provider.send(android(PushKind.RING, "hang-1")) == Uncertain("timeout")
    assert time.monotonic() - started < TIMEOUT + 0.3
    assert isinstance(await fcm.provider.send(android(PushKind.RING, "ok-after")), Accepted)


async def test_one_token_request_for_many_concurrent_sends(fcm: Fcm) -> None:
    messages = [android(PushKind.RING, f"ok-{i}") for i in range(20)]
    results = await asyncio.gather(*(fcm.provider.send(m) for m in messages))
    assert all(isinstance(r, Accepted) for r in results)
    assert fcm.fake.token_requests == 1  # single-flight, then cached
    assert len({r.access_token for r in fcm.fake.requests}) == 1


async def test_the_token_is_refreshed_shortly_before_it_expires(fcm: Fcm) -> None:
    await fcm.provider.send(android(PushKind.RING, "ok-1"))
    fcm.clock.now += 3600 - 400  # still outside the refresh margin
    await fcm.provider.send(android(PushKind.RING, "ok-2"))
    assert fcm.fake.token_requests == 1
    fcm.clock.now += 200  # inside the margin (5 min before expiry)
    await fcm.provider.send(android(PushKind.RING, "ok-3"))
    assert fcm.fake.token_requests == 2
    first, _, third = fcm.fake.requests
    assert first.access_token != third.access_token


async def test_a_401_refreshes_the_token_and_retries_once(fcm: Fcm) -> None:
    await fcm.provider.send(android(PushKind.RING, "ok-1"))
    fcm.fake.revoke_tokens()
    message = android(PushKind.RING, "ok-2")
    assert isinstance(await fcm.provider.send(message), Accepted)
    assert fcm.fake.token_requests == 2
    assert [r.status for r in fcm.fake.requests] == [200, 401, 200]


async def test_every_nth_request_failing_is_a_retry(fcm: Fcm) -> None:
    fcm.fake.fail_every = 3
    results = [await fcm.provider.send(android(PushKind.RING, f"ok-{i}")) for i in range(6)]
    assert [type(r) for r in results] == [Accepted, Accepted, Retry] * 2


async def test_a_refused_oauth_grant_fails_the_push_without_pruning(fcm: Fcm) -> None:
    fcm.fake.refuse_grants = True
    result = await fcm.provider.send(android(PushKind.RING, "ok-1"))
    assert result == Permanent("oauth_refused", prune=False)
    assert fcm.fake.requests == []


async def test_an_unreachable_fcm_is_a_retry(fcm: Fcm) -> None:
    await fcm.provider.send(android(PushKind.RING, "ok-warm"))
    provider = FcmProvider(fcm.settings.with_overrides(fcm_endpoint="http://127.0.0.1:9"))
    try:
        result = await provider.send(android(PushKind.RING, "ok-1"))
    finally:
        await provider.close()
    assert result == Retry("connection_error")
