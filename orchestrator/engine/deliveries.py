"""Sending claimed pushes: provider call, retry/backoff bounded by the deadline, brake, record."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping

from orchestrator.domain.model import Platform
from orchestrator.domain.push import Accepted, Permanent, PushResult, Retry
from orchestrator.domain.work import ClaimedDelivery, DeliveryOutcome, Ended, OutcomeStatus
from orchestrator.engine.brake import Brake
from orchestrator.engine.settings import EngineSettings
from orchestrator.logs import get_logger
from orchestrator.metrics import Metrics
from orchestrator.ports import CallStore, Clock, PushProvider

log = get_logger("orchestrator.push")


class Sender:
    def __init__(
        self,
        store: CallStore,
        providers: Mapping[Platform, PushProvider],
        settings: EngineSettings,
        metrics: Metrics,
        clock: Clock,
        brake: Brake,
        on_ended: Callable[[list[Ended]], None],
        inflight: set[int],
    ) -> None:
        self.store = store
        self.providers = providers
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.brake = brake
        self.on_ended = on_ended
        self.inflight = inflight  # shared with the engine, which renews their leases
        self._limits = {p: asyncio.Semaphore(settings.push_concurrency) for p in providers}
        self._braked: dict[str, bool] = {}

    async def send_all(self, deliveries: list[ClaimedDelivery]) -> list[Ended]:
        """Send, then record every outcome in one batch. Returns calls that ended because of it."""
        if not deliveries:
            return []
        self.inflight.update(d.id for d in deliveries)
        try:
            outcomes = await asyncio.gather(*(self._one(d) for d in deliveries))
            result = await self.store.record_outcomes(list(outcomes))
        except asyncio.CancelledError:
            raise  # shutdown: the ids stay in flight so the engine hands their leases back
        except BaseException:
            self.inflight.difference_update(d.id for d in deliveries)
            raise
        self.inflight.difference_update(d.id for d in deliveries)
        for seconds in result.ring_latencies:
            self.metrics.time_to_ring.observe(seconds)
        self.on_ended(result.ended)
        return result.ended

    async def _one(self, delivery: ClaimedDelivery) -> DeliveryOutcome:
        message = delivery.message
        provider = self.providers[message.platform]
        if delivery.void_reason is not None:
            return self._log_outcome(
                delivery,
                DeliveryOutcome(
                    message.delivery_id,
                    message.call_id,
                    OutcomeStatus.FAILED,
                    provider.name,
                    delivery.void_reason,
                ),
                0.0,
            )
        started = self.clock.monotonic()
        async with self._limits[message.platform]:
            try:
                # The provider has its own timeout; this is the backstop for a buggy one.
                result: PushResult = await asyncio.wait_for(
                    provider.send(message), self.settings.push_timeout_seconds + 1.0
                )
            except TimeoutError:
                result = Retry("timeout")
            except Exception as exc:  # a provider bug must not lose the delivery
                result = Retry(f"exception:{type(exc).__name__}")
        elapsed = self.clock.monotonic() - started
        self.metrics.push_latency.labels(provider.name).observe(elapsed)
        outcome = self._outcome(delivery, provider.name, result, elapsed)
        return self._log_outcome(delivery, outcome, elapsed)

    def _outcome(
        self, delivery: ClaimedDelivery, provider: str, result: PushResult, elapsed: float
    ) -> DeliveryOutcome:
        message = delivery.message
        now = self.clock.monotonic()

        def make(
            status: OutcomeStatus,
            error: str | None = None,
            *,
            provider_message_id: str | None = None,
            retry_in: float = 0.0,
        ) -> DeliveryOutcome:
            return DeliveryOutcome(
                message.delivery_id,
                message.call_id,
                status,
                provider,
                error,
                provider_message_id,
                retry_in,
            )

        if isinstance(result, Accepted):
            self.brake.record(provider, False, now)
            return make(OutcomeStatus.SENT, provider_message_id=result.provider_message_id)
        if isinstance(result, Permanent):
            self.brake.record(provider, result.prune, now)
            if not result.prune:
                return make(OutcomeStatus.FAILED, result.error)
            allowed = self.brake.allows_prune(provider, now)
            self._brake_state(provider, engaged=not allowed)
            if allowed:
                return make(OutcomeStatus.PRUNED, result.error)
            return make(OutcomeStatus.FAILED, f"{result.error} (prune braked)")
        self.brake.record(provider, False, now)
        delay = self._backoff(delivery.attempts, result.retry_after)
        if delivery.attempts >= self.settings.push_max_attempts:
            return make(OutcomeStatus.FAILED, f"retries_exhausted:{result.error}")
        if delay >= delivery.remaining - elapsed:
            # No ring after its deadline, no stop/missed after they expire.
            return make(OutcomeStatus.FAILED, f"deadline:{result.error}")
        self.metrics.push_retries.labels(provider).inc()
        return make(OutcomeStatus.RETRY, result.error, retry_in=delay)

    def _brake_state(self, provider: str, *, engaged: bool) -> None:
        if engaged != self._braked.get(provider, False):
            self._braked[provider] = engaged
            # Every token looking dead at once is a configuration error (sandbox vs
            # production, wrong bundle or Firebase project), not dead devices: keep them.
            (log.error if engaged else log.warning)(
                "prune_brake_engaged" if engaged else "prune_brake_released", provider=provider
            )
        self.metrics.prune_brake.labels(provider).set(1 if engaged else 0)

    def _backoff(self, attempts: int, retry_after: float | None) -> float:
        base = self.settings.push_retry_base_seconds * (2 ** max(attempts - 1, 0))
        jittered = min(base, self.settings.push_retry_max_seconds) * random.uniform(0.8, 1.2)
        return float(max(jittered, retry_after or 0.0))

    def _log_outcome(
        self, delivery: ClaimedDelivery, outcome: DeliveryOutcome, elapsed: float
    ) -> DeliveryOutcome:
        message = delivery.message
        self.metrics.pushes.labels(outcome.provider, message.kind.value, outcome.status.value).inc()
        if outcome.status is OutcomeStatus.PRUNED:
            self.metrics.devices_pruned.labels(outcome.provider).inc()
        event = {
            OutcomeStatus.SENT: "push_sent",
            OutcomeStatus.RETRY: "push_retry",
            OutcomeStatus.FAILED: "push_failed",
            OutcomeStatus.PRUNED: "device_pruned",
        }[outcome.status]
        log.info(
            event,
            call_id=str(message.call_id),
            kind=message.kind.value,
            provider=outcome.provider,
            platform=message.platform.value,
            seq=message.seq,
            attempts=delivery.attempts,
            error=outcome.error,
            retry_in=outcome.retry_in or None,
            latency_ms=round(elapsed * 1000, 2),
            delivery_id=message.delivery_id,
        )
        return outcome
