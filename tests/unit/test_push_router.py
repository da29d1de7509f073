"""Provider choice per platform, the dry-run provider and the in-memory provider."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from orchestrator.adapters.push.apns import APNS_HOSTS, ApnsProvider
from orchestrator.adapters.push.factory import TimedProvider, build_providers
from orchestrator.adapters.push.fcm import FcmProvider
from orchestrator.adapters.push.log_provider import LogPushProvider
from orchestrator.config import ConfigError, Settings
from orchestrator.domain.model import Platform, PushKind
from orchestrator.domain.push import Accepted, Permanent
from orchestrator.metrics import Metrics
from orchestrator.ports import PushProvider
from orchestrator.testing.memory_push import MemoryPushProvider
from tests.fakes.keys import write_apns_key, write_service_account
from tests.fakes.messages import push, ring_ios
from tests.fakes.tokens import apns_hex


def credentials(tmp_path: Path) -> Settings:
    key = write_apns_key(tmp_path)
    account = write_service_account(tmp_path, "http://127.0.0.1:9/token")
    return Settings(
        apns_key_file=str(key.path),
        apns_key_id=key.key_id,
        apns_team_id=key.team_id,
        apns_bundle_id="com.example",
        fcm_service_account_file=str(account.path),
    )


def inner(provider: PushProvider) -> PushProvider:
    assert isinstance(provider, TimedProvider)
    return provider.inner


async def test_real_providers_when_credentials_are_configured(tmp_path: Path) -> None:
    providers = build_providers(credentials(tmp_path), Metrics())
    assert isinstance(inner(providers[Platform.IOS]), ApnsProvider)
    assert isinstance(inner(providers[Platform.ANDROID]), FcmProvider)
    assert {p.name for p in providers.values()} == {"apns", "fcm"}
    for provider in providers.values():
        assert isinstance(provider, PushProvider)
        await provider.close()


async def test_a_platform_without_credentials_is_dry_run(tmp_path: Path) -> None:
    settings = credentials(tmp_path).with_overrides(fcm_service_account_file=None)
    providers = build_providers(settings, Metrics())
    assert isinstance(inner(providers[Platform.IOS]), ApnsProvider)
    assert providers[Platform.ANDROID].name == "log"


def test_untimed_providers_are_the_bare_ones(tmp_path: Path) -> None:
    providers = build_providers(credentials(tmp_path), Metrics(), timed=False)
    assert isinstance(providers[Platform.IOS], ApnsProvider)
    assert isinstance(providers[Platform.ANDROID], FcmProvider)


def test_push_dry_run_1_dry_runs_everything(tmp_path: Path) -> None:
    providers = build_providers(credentials(tmp_path).with_overrides(push_dry_run=True), Metrics())
    assert {p.name for p in providers.values()} == {"log"}


def test_push_dry_run_0_without_credentials_refuses_to_start(tmp_path: Path) -> None:
    settings = credentials(tmp_path).with_overrides(push_dry_run=False, apns_key_id=None)
    with pytest.raises(ConfigError, match="APNs"):
        build_providers(settings, Metrics())


def test_apns_host_follows_endpoint_then_device_environment_then_default(tmp_path: Path) -> None:
    settings = credentials(tmp_path)
    provider = ApnsProvider(settings)
    assert provider.endpoint_for("production") == APNS_HOSTS["production"]
    assert provider.endpoint_for("sandbox") == ("api.sandbox.push.apple.com", 443)
    assert provider.endpoint_for(None) == APNS_HOSTS["production"]
    sandbox = ApnsProvider(settings.with_overrides(apns_use_sandbox=True))
    assert sandbox.endpoint_for(None) == APNS_HOSTS["sandbox"]
    assert sandbox.endpoint_for("production") == APNS_HOSTS["production"]
    pinned = ApnsProvider(settings.with_overrides(apns_endpoint=("proxy.local", 8443)))
    assert pinned.endpoint_for("sandbox") == ("proxy.local", 8443)
    assert pinned.client_for("sandbox").authority == "proxy.local:8443"


async def test_latency_is_recorded_per_provider() -> None:
    metrics = Metrics()
    timed = TimedProvider(LogPushProvider(), metrics)
    await timed.send(ring_ios("ok-1"))
    count = metrics.registry.get_sample_value(
        "orchestrator_push_provider_latency_seconds_count", {"provider": "log"}
    )
    assert count == 1


async def test_log_provider_accepts_and_logs_without_tokens() -> None:
    message = push(PushKind.RING, token="secret-alert-token", voip_token="secret-voip-token")
    with structlog.testing.capture_logs() as events:
        assert await LogPushProvider().send(message) == Accepted(f"log-{message.delivery_id}")
    [event] = events
    assert event["event"] == "push_dry_run" and event["call_id"] == str(message.call_id)
    assert (event["kind"], event["platform"], event["seq"]) == ("ring", "ios", message.seq)
    for secret in (message.token, message.voip_token):
        assert secret and secret not in repr(events)


async def test_memory_provider_records_and_follows_its_script() -> None:
    memory = MemoryPushProvider("apns")
    token = apns_hex("bad-1")  # iOS test tokens are APNs-format (tests/fakes/tokens.py)
    memory.script(token, Permanent("BadDeviceToken", prune=True))
    first, second = ring_ios("bad-1"), ring_ios("bad-1")
    assert await memory.send(first) == Permanent("BadDeviceToken", prune=True)
    assert isinstance(await memory.send(second), Accepted)  # script exhausted
    assert memory.sent_to(token) == [first, second]
    assert memory.counts()[(str(first.call_id), "ring", 1)] == 1
    assert isinstance(memory, PushProvider)
