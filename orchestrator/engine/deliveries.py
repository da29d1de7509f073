"""Sending claimed pushes: each send is its own task (a hung provider holds back nobody),
retry/backoff is bounded by the push's deadline, results are group-committed."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from dataclasses import replace
from uuid import UUID

from orchestrator.domain.brake import Brake
from orchestrator.domain.model import Platform, PushKind
from orchestrator.domain.push import UNCERTAIN, Accepted, Permanent, PushResult, Retry, Uncertain
from orchestrator.domain.work import ClaimedDelivery, DeliveryOutcome, Ended, OutcomeStatus
from orchestrator.engine import timers
from orchestrator.engine.fair import FairLimiter
from orchestrator.engine.pruning import PruneQuarantine
from orchestrator.engine.recorder import Recorder
from orchestrator.engine.settings import EngineSettings
from orchestrator.logs import exception_fields, get_logger
from orchestrator.metrics import Metrics
from orchestrator.ports import CallStore, Clock, PushProvider

log = get_logger("orchestrator.push")
# A ring whose attempt was uncertain is sent once more only if it can still ring this long.
UNCERTAIN_RESEND_MIN_REMAINING = 2.0
RETRY_WAKE_MARGIN = 0.02  # the retry is due on the database clock: wake just after it
EVENTS = {
    OutcomeStatus.SENT: "push_sent",
    OutcomeStatus.RETRY: "push_retry",
    OutcomeStatus.FAILED: "push_failed",
    OutcomeStatus.PRUNED: "device_pruned",
}


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
        self.providers = providers
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.brake = brake
        self.inflight = inflight  # shared with the engine, which renews their leases
        self.recorder = Recorder(store, metrics, on_ended, clock)
        self.alarms = timers.Alarms(clock)  # retry wake-ups, cancelled when the engine drains
        self.quarantine = PruneQuarantine(store, brake, metrics, settings.prune_quarantine_seconds)
        self.tasks: set[asyncio.Task[None]] = set()
        # Set by the engine: wake the call up when a retry falls due (the loop would otherwise
        # find it only at its next backstop scan, RECONCILE_INTERVAL_SECONDS later).
        self.on_retry: Callable[[UUID], None] | None = None
        # Per provider, shared fairly between calls: one call's fan-out never starves a ring.
        self._limits = {p: FairLimiter(settings.push_concurrency) for p in providers}

    def dispatch(self, deliveries: list[ClaimedDelivery]) -> None:
        """Start sending; returns at once. Each delivery records its own outcome."""
        for delivery in deliveries:
            if delivery.id in self.inflight:
                # Ours already: sent, its outcome still being written while the lease lapsed
                # (a database outage). Sending it again would be the duplicate.
                continue
            self.inflight.add(delivery.id)
            task = asyncio.create_task(self._send_and_record(delivery))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def idle(self, timeout: float | None = None) -> bool:
        """Wait for every send in flight (True) or until `timeout` (False)."""
        if not self.tasks:
            return True
        return not await timers.wait_all(self.clock, set(self.tasks), timeout)

    async def _send_and_record(self, delivery: ClaimedDelivery) -> None:
        try:
            outcome = await self._one(delivery)
            await self.recorder.record(outcome)
            if outcome.status is OutcomeStatus.RETRY and self.on_retry is not None:
                on_retry, call_id = self.on_retry, outcome.call_id
                self.alarms.call_later(
                    outcome.retry_in + RETRY_WAKE_MARGIN, lambda: on_retry(call_id)
                )
        except asyncio.CancelledError:
            raise  # shutdown: the id stays in flight so the engine hands its lease back
        except Exception as exc:  # not recorded: the lease expires and it is tried again
            log.error("push_not_recorded", delivery_id=delivery.id, **exception_fields(exc))
        self.inflight.discard(delivery.id)
        if self.settings.prune_quarantine_seconds <= 0:
            await self.quarantine.settle(self.clock.monotonic())

    async def _one(self, delivery: ClaimedDelivery) -> DeliveryOutcome:
        message = delivery.message
        provider = self.providers[message.platform]
        if delivery.void_reason is not None:
            failed = DeliveryOutcome(
                message.delivery_id,
                message.call_id,
                OutcomeStatus.FAILED,
                provider.name,
                delivery.void_reason,
            )
            return self._log_outcome(delivery, failed, 0.0)
        started = self.clock.monotonic()
        priority = 0 if message.kind is PushKind.RING else 1
        async with self._limits[message.platform].slot(message.call_id, priority):
            try:
                # The provider has its own timeout; this is the backstop for a buggy one.
                result: PushResult = await timers.within(
                    self.clock, provider.send(message), self.settings.push_timeout_seconds + 1.0
                )
            except TimeoutError:
                result = Uncertain("timeout")  # the provider's own deadline did not hold
            except Exception as exc:  # a provider bug must not lose the delivery
                log.error(
                    "provider_error",
                    provider=provider.name,
                    delivery_id=delivery.id,
                    **exception_fields(exc),
                )
                result = Retry(f"exception:{type(exc).__name__}")
        elapsed = self.clock.monotonic() - started
        self.metrics.push_latency.labels(provider.name).observe(elapsed)
        return self._log_outcome(
            delivery, self._outcome(delivery, provider.name, result, elapsed), elapsed
        )

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
        if delivery.previous_error == UNCERTAIN and delivery.kind is PushKind.RING:
            # This was the one resend of a ring that may already have arrived. Uncertain again:
            # two possible deliveries, no third. A clean failure (it certainly did not reach
            # the provider) is not a send: try the resend again while the deadline allows, else
            # count the first one as delivered. A dead token still counts as dead.
            if isinstance(result, Permanent):
                self.brake.record(provider, result.prune, now, message.recipient_id)
                if result.prune:
                    self.quarantine.hold(message.delivery_id, provider, now)
                return make(OutcomeStatus.FAILED, result.error)
            self.brake.record(provider, False, now)
            if isinstance(result, Retry):
                delay = self._backoff(delivery.attempts, result.retry_after)
                if (
                    delivery.attempts < self.settings.push_max_attempts
                    and delivery.remaining - elapsed - delay >= UNCERTAIN_RESEND_MIN_REMAINING
                ):
                    self.metrics.push_retries.labels(provider).inc()
                    return make(OutcomeStatus.RETRY, UNCERTAIN, retry_in=delay)
            return replace(make(OutcomeStatus.SENT, UNCERTAIN), uncertain=True)
        if isinstance(result, Uncertain):
            self.brake.record(provider, False, now)
            retry_in = self._backoff(1, None)
            resend = (
                delivery.kind is PushKind.RING
                and delivery.attempts < self.settings.push_max_attempts
                and delivery.remaining - elapsed - retry_in >= UNCERTAIN_RESEND_MIN_REMAINING
            )
            if resend:
                self.metrics.push_retries.labels(provider).inc()
                return replace(
                    make(OutcomeStatus.RETRY, UNCERTAIN, retry_in=retry_in), uncertain=True
                )
            # stop/missed (and a ring too close to its deadline): maybe delivered, never resent.
            return replace(make(OutcomeStatus.SENT, UNCERTAIN), uncertain=True)
        if isinstance(result, Permanent):
            # Counted per recipient: one account's garbage tokens cannot brake everyone.
            self.brake.record(provider, result.prune, now, message.recipient_id)
            if result.prune:
                # Failed now (so the call can end unreachable); the device is disabled only
                # if the brake still allows it when the quarantine is over.
                self.quarantine.hold(message.delivery_id, provider, now)
            return make(OutcomeStatus.FAILED, result.error)
        self.brake.record(provider, False, now)
        delay = self._backoff(delivery.attempts, result.retry_after)
        if delivery.attempts >= self.settings.push_max_attempts:
            return make(OutcomeStatus.FAILED, f"retries_exhausted:{result.error}")
        if delay >= delivery.remaining - elapsed:
            # No ring after its deadline, no stop/missed after they expire.
            return make(OutcomeStatus.FAILED, f"deadline:{result.error}")
        self.metrics.push_retries.labels(provider).inc()
        return make(OutcomeStatus.RETRY, result.error, retry_in=delay)

    def _backoff(self, attempts: int, retry_after: float | None) -> float:
        base = self.settings.push_retry_base_seconds * (2 ** max(attempts - 1, 0))
        jittered = min(base, self.settings.push_retry_max_seconds) * random.uniform(0.8, 1.2)
        return float(max(jittered, retry_after or 0.0))

    def _log_outcome(
        self, delivery: ClaimedDelivery, outcome: DeliveryOutcome, elapsed: float
    ) -> DeliveryOutcome:
        message = delivery.message
        label = UNCERTAIN if outcome.uncertain else outcome.status.value
        self.metrics.pushes.labels(outcome.provider, message.kind.value, label).inc()
        log.info(
            "push_uncertain" if outcome.uncertain else EVENTS[outcome.status],
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
