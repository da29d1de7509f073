"""Prometheus metrics. One `Metrics` per process (tests may build their own registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.calls_ended = Counter(
            "orchestrator_calls_ended_total",
            "Calls ended, by end reason",
            ["end_reason"],
            registry=r,
        )
        self.time_to_ring = Histogram(
            "orchestrator_time_to_ring_seconds",
            "Ring accepted by the provider minus calls.created_at (database clock)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.pushes = Counter(
            "orchestrator_pushes_total",
            "Push attempts by provider, kind and outcome",
            ["provider", "kind", "outcome"],
            registry=r,
        )
        self.push_latency = Histogram(
            "orchestrator_push_provider_latency_seconds",
            "Provider request latency",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.push_retries = Counter(
            "orchestrator_push_retries_total", "Push retries scheduled", ["provider"], registry=r
        )
        self.devices_pruned = Counter(
            "orchestrator_devices_pruned_total",
            "Devices disabled after a permanent error",
            ["provider"],
            registry=r,
        )
        self.prune_brake = Gauge(
            "orchestrator_prune_brake_engaged",
            "1 while pruning is braked for a provider",
            ["provider"],
            registry=r,
        )
        self.timer_lateness = Histogram(
            "orchestrator_timer_lateness_seconds",
            "Timer outcome time minus its deadline",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.transitions = Counter(
            "orchestrator_transitions_total",
            "Transitions written by the worker",
            ["to_status", "end_reason"],
            registry=r,
        )
        self.jobs = Counter(
            "orchestrator_jobs_total", "Jobs processed", ["kind", "outcome"], registry=r
        )
        self.queue_depth = Gauge(
            "orchestrator_queue_depth", "Due work waiting (jobs and deliveries)", registry=r
        )
        self.queue_age = Gauge(
            "orchestrator_queue_oldest_age_seconds", "Age of the oldest due item", registry=r
        )
        self.wakeups = Counter(
            "orchestrator_wakeups_total", "Wake-ups received", ["source"], registry=r
        )
        self.reconnects = Counter(
            "orchestrator_reconnects_total",
            "Reconnects of a dependency",
            ["dependency"],
            registry=r,
        )
        self.realtime_events = Counter(
            "orchestrator_realtime_events_total",
            "Realtime postgres_changes received",
            registry=r,
        )
        self.reconciles = Counter(
            "orchestrator_reconciles_total", "Full re-scans of due work", ["trigger"], registry=r
        )
        self.realtime_rebuilds = Counter(
            "orchestrator_realtime_rebuilds_total", "Realtime client rebuilds", registry=r
        )
        self.realtime_lag = Histogram(
            "orchestrator_realtime_lag_seconds",
            "Now minus commit_timestamp of an event",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.relay_lag = Gauge(
            "orchestrator_mqtt_relay_lag_seconds",
            "Age of the oldest unpublished audit event",
            registry=r,
        )
        self.tokens = Counter(
            "orchestrator_tokens_total", "Token requests by outcome", ["outcome"], registry=r
        )
        self.token_latency = Histogram(
            "orchestrator_token_request_seconds",
            "Token request latency",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ncs_notices = Counter(
            "orchestrator_ncs_notices_total",
            "Agora NCS notices by outcome (applied, recorded, stale, duplicate, ignored, ...)",
            ["outcome"],
            registry=r,
        )
        self.ncs_write_latency = Histogram(
            "orchestrator_ncs_write_seconds",
            "NCS request received to notice durably written",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ncs_notice_lag = Histogram(
            "orchestrator_ncs_notice_lag_seconds",
            "Notice written minus its notifyMs (Agora's clock against ours)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
