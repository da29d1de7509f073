"""The real APNs provider against the fake APNs over TLS + HTTP/2 on real sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.adapters.push.apns import ApnsProvider
from orchestrator.config import Settings
from orchestrator.domain.model import PushKind
from orchestrator.domain.push import Accepted, Permanent, Retry, Uncertain
from tests.fakes.apns_server import FakeApns
from tests.fakes.keys import APNS_BUNDLE_ID, write_apns_key, write_tls
from tests.fakes.messages import push, ring_ios
from tests.fakes.tokens import apns_hex

TIMEOUT = 0.5


@dataclass
class Apns:
    fake: FakeApns
    provider: ApnsProvider
    settings: Settings


def apns_settings(tmp_path: Path, endpoint: tuple[str, int] | None, **kw: object) -> Settings:
    return Settings(
        apns_key_file=str(tmp_path / "AuthKey.p8"),
        apns_key_id="ABC123DEFG",
        apns_team_id="TEAM123456",
        apns_bundle_id=APNS_BUNDLE_ID,
        apns_endpoint=endpoint,
        apns_ca_file=str(tmp_path / "test-ca.pem"),
        push_timeout_seconds=TIMEOUT,
    ).with_overrides(**kw)


@pytest.fixture
async def apns(tmp_path: Path) -> AsyncIterator[Apns]:
    key = write_apns_key(tmp_path)
    _, cert, _ = write_tls(tmp_path)
    fake = await FakeApns(key, APNS_BUNDLE_ID, cert).start()
    settings = apns_settings(tmp_path, fake.endpoint)
    provider = ApnsProvider(settings)
    yield Apns(fake, provider, settings)
    await provider.close()
    await fake.close()


async def test_ring_is_a_voip_push_with_the_common_fields(apns: Apns) -> None:
    message = ring_ios("ok-ring")
    result = await apns.provider.send(message)
    assert isinstance(result, Accepted) and result.provider_message_id
    [req] = apns.fake.requests
    h = req.headers
    assert h[":path"] == "/3/device/" + apns_hex("ok-ring")
    assert h["apns-push-type"] == "voip"
    assert h["apns-topic"] == f"{APNS_BUNDLE_ID}.voip"
    assert h["apns-priority"] == "10"
    assert h["apns-expiration"] == str(int(message.expires_at.timestamp()))
    assert h["apns-collapse-id"] == str(message.call_id)
    assert result.provider_message_id == h["apns-id"]
    assert req.body == message.common_fields()  # data at top level, typed; no `aps`
    assert apns.fake.accepted[(apns_hex("ok-ring"), str(message.call_id), "ring")] == 1


async def test_missed_is_a_localised_alert_to_the_alert_token(apns: Apns) -> None:
    message = push(PushKind.MISSED, token="ok-alert", voip_token="ok-voip", video=False)
    assert isinstance(await apns.provider.send(message), Accepted)
    [req] = apns.fake.requests
    assert req.token == apns_hex("ok-alert")
    assert req.headers["apns-push-type"] == "alert"
    assert req.headers["apns-topic"] == APNS_BUNDLE_ID
    assert req.headers["apns-expiration"] == str(int(message.expires_at.timestamp()))
    alert = req.body["aps"]["alert"]
    assert alert["loc-key"] == "MISSED_CALL"
    assert alert["loc-args"] == ["Ada Lovelace"]
    assert {k: v for k, v in req.body.items() if k != "aps"} == message.common_fields()


async def test_video_missed_call_has_its_own_key(apns: Apns) -> None:
    await apns.provider.send(push(PushKind.MISSED, video=True))
    assert apns.fake.requests[0].body["aps"]["alert"]["loc-key"] == "MISSED_VIDEO_CALL"


async def test_stop_is_never_sent_to_ios(apns: Apns) -> None:
    result = await apns.provider.send(push(PushKind.STOP))
    assert result == Permanent("no_stop_on_ios", prune=False)
    assert apns.fake.requests == []


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("bad-1", Permanent("BadDeviceToken", prune=True)),
        ("gone-1", Permanent("Unregistered", prune=True)),
        ("notopic-1", Permanent("DeviceTokenNotForTopic", prune=True)),
        ("throttle-1", Retry("TooManyRequests")),
        ("error-1", Retry("InternalServerError")),
        ("unavailable-1", Retry("ServiceUnavailable")),
    ],
)
async def test_error_mapping_and_no_hidden_resend(apns: Apns, token: str, expected: object) -> None:
    message = ring_ios(token)
    assert await apns.provider.send(message) == expected
    assert (
        apns.fake.counts[(apns_hex(token), str(message.call_id), "ring")] == 1
    )  # no internal retry


async def test_expired_provider_token_is_reminted_and_retried_once(apns: Apns) -> None:
    message = ring_ios("expired-1")
    assert isinstance(await apns.provider.send(message), Accepted)
    first, second = apns.fake.requests
    assert (first.status, first.reason) == (403, "ExpiredProviderToken")
    assert second.status == 200 and second.jwt != first.jwt
    assert apns.fake.accepted[(apns_hex("expired-1"), str(message.call_id), "ring")] == 1


async def test_a_token_expired_at_apple_is_replaced_for_every_later_send(apns: Apns) -> None:
    assert isinstance(await apns.provider.send(ring_ios("ok-a")), Accepted)
    apns.fake.expire_jwts()  # as if an hour had passed
    assert isinstance(await apns.provider.send(ring_ios("ok-b")), Accepted)
    assert isinstance(await apns.provider.send(ring_ios("ok-c")), Accepted)
    jwts = [r.jwt for r in apns.fake.requests]
    assert len(jwts) == 4 and jwts[0] == jwts[1] != jwts[2] == jwts[3]  # one re-mint only


async def test_a_hung_request_is_uncertain_within_the_timeout(apns: Apns) -> None:
    started = time.monotonic()
    # Written and never answered: Apple may have it (the contract's `uncertain`).
    assert await apns.provider.send(ring_ios("hang-1")) == Uncertain("timeout")
    assert time.monotonic() - started < TIMEOUT + 0.3
    # The connection is alive (the PING probe is answered): the next push uses it.
    assert isinstance(await apns.provider.send(ring_ios("ok-1")), Accepted)
    assert apns.fake.connections == 1


async def test_goaway_is_a_retry_and_the_next_send_reconnects(apns: Apns) -> None:
    assert isinstance(await apns.provider.send(ring_ios("ok-before")), Accepted)
    message = ring_ios("goaway-1")
    assert await apns.provider.send(message) == Retry("goaway")
    assert (
        apns.fake.counts[(apns_hex("goaway-1"), str(message.call_id), "ring")] == 0
    )  # never processed
    assert isinstance(await apns.provider.send(ring_ios("ok-after")), Accepted)
    assert apns.fake.connections >= 2


async def test_goaway_lets_in_flight_requests_finish_without_a_resend(apns: Apns) -> None:
    slow = ring_ios("slow-1")
    in_flight = asyncio.create_task(apns.provider.send(slow))
    await apns.fake.wait_requests(1)
    assert await apns.provider.send(ring_ios("goaway-1")) == Retry("goaway")
    assert isinstance(await in_flight, Accepted)  # answered after the GOAWAY, on the old conn
    assert apns.fake.counts[(apns_hex("slow-1"), str(slow.call_id), "ring")] == 1
    assert isinstance(await apns.provider.send(ring_ios("ok-after")), Accepted)


async def test_a_dropped_connection_is_uncertain_and_the_next_send_reconnects(
    apns: Apns,
) -> None:
    # Lost after the request was written: the client cannot know whether it was processed.
    assert await apns.provider.send(ring_ios("drop-1")) == Uncertain("connection_lost")
    assert isinstance(await apns.provider.send(ring_ios("ok-1")), Accepted)
    assert apns.fake.connections == 2


async def test_a_half_open_connection_is_detected_and_replaced(apns: Apns) -> None:
    assert isinstance(await apns.provider.send(ring_ios("ok-0")), Accepted)
    apns.fake.freeze_connections()
    results = [await apns.provider.send(ring_ios(f"ok-{i}")) for i in range(1, 4)]
    assert results[0] == Uncertain("timeout")
    assert isinstance(results[-1], Accepted)  # the engine's retries get through
    assert apns.fake.connections == 2


async def test_every_nth_request_failing_is_a_retry(apns: Apns) -> None:
    apns.fake.fail_every = 2
    results = [await apns.provider.send(ring_ios(f"ok-{i}")) for i in range(4)]
    assert [type(r) for r in results] == [Accepted, Retry, Accepted, Retry]
    assert results[1] == Retry("ServiceUnavailable")


async def test_many_concurrent_sends_share_one_connection_within_its_stream_limit(
    apns: Apns,
) -> None:
    apns.fake.max_streams = 3
    messages = [ring_ios(f"ok-{i}") for i in range(30)]
    results = await asyncio.gather(*(apns.provider.send(m) for m in messages))
    assert all(isinstance(r, Accepted) for r in results)
    assert apns.fake.connections == 1
    assert sorted(apns.fake.counts.values()) == [1] * 30


async def test_unreachable_endpoint_is_a_retry(tmp_path: Path) -> None:
    write_apns_key(tmp_path)
    write_tls(tmp_path)
    provider = ApnsProvider(apns_settings(tmp_path, ("127.0.0.1", 9)))
    try:
        assert await provider.send(ring_ios("ok-1")) == Retry("connect_failed")
    finally:
        await provider.close()


async def test_an_untrusted_server_certificate_is_refused(tmp_path: Path, apns: Apns) -> None:
    provider = ApnsProvider(apns.settings.with_overrides(apns_ca_file=None))
    try:
        assert await provider.send(ring_ios("ok-1")) == Retry("connect_failed")
    finally:
        await provider.close()
    assert apns.fake.requests == []


async def test_each_device_goes_to_the_host_of_its_apns_environment(tmp_path: Path) -> None:
    key = write_apns_key(tmp_path)
    _, cert, _ = write_tls(tmp_path)
    production = await FakeApns(key, APNS_BUNDLE_ID, cert).start()
    sandbox = await FakeApns(key, APNS_BUNDLE_ID, cert).start()
    hosts = {"production": production.endpoint, "sandbox": sandbox.endpoint}
    provider = ApnsProvider(apns_settings(tmp_path, None, apns_use_sandbox=True), hosts=hosts)
    try:
        for token, environment in (("ok-p", "production"), ("ok-s", "sandbox"), ("ok-d", None)):
            assert isinstance(
                await provider.send(ring_ios(token, apns_environment=environment)), Accepted
            )
    finally:
        await provider.close()
        await production.close()
        await sandbox.close()
    assert [r.token for r in production.requests] == [apns_hex("ok-p")]
    assert [r.token for r in sandbox.requests] == [
        apns_hex("ok-s"),
        apns_hex("ok-d"),
    ]  # default: APNS_USE_SANDBOX
