"""Which provider serves each platform: the real one, or the dry-run log."""

from __future__ import annotations

import time

from orchestrator.adapters.push.apns import ApnsProvider
from orchestrator.adapters.push.fcm import FcmProvider
from orchestrator.adapters.push.log_provider import LogPushProvider
from orchestrator.config import Settings
from orchestrator.domain.model import Platform
from orchestrator.domain.push import PushMessage, PushResult
from orchestrator.metrics import Metrics
from orchestrator.ports import PushProvider


class TimedProvider:
    """Records each send's latency into `push_latency{provider}`; otherwise transparent."""

    def __init__(self, inner: PushProvider, metrics: Metrics) -> None:
        self.inner = inner
        self.name = inner.name
        self._latency = metrics.push_latency.labels(provider=inner.name)

    async def send(self, message: PushMessage) -> PushResult:
        started = time.perf_counter()
        try:
            return await self.inner.send(message)
        finally:
            self._latency.observe(time.perf_counter() - started)

    async def close(self) -> None:
        await self.inner.close()


def build_providers(
    settings: Settings, metrics: Metrics, *, timed: bool = True
) -> dict[Platform, PushProvider]:
    """Real provider when the platform's credentials are configured and PUSH_DRY_RUN is not 1;
    the log provider otherwise. PUSH_DRY_RUN=0 with missing credentials raises ConfigError.
    `timed=False` leaves latency to the caller (when it measures around `send` itself)."""
    settings.require_push_credentials()
    dry = settings.push_dry_run is True
    ios: PushProvider = LogPushProvider()
    android: PushProvider = LogPushProvider()
    if settings.apns_configured and not dry:
        ios = ApnsProvider(settings)
    if settings.fcm_configured and not dry:
        android = FcmProvider(settings)
    if not timed:
        return {Platform.IOS: ios, Platform.ANDROID: android}
    return {
        Platform.IOS: TimedProvider(ios, metrics),
        Platform.ANDROID: TimedProvider(android, metrics),
    }
