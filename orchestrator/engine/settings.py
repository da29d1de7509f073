"""Every lease, timeout, batch and backoff of the engine, injectable (tests use short ones)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineSettings:
    worker_id: str = "worker"
    lease_seconds: float = 5.0
    reconcile_interval: float = 5.0
    batch_size: int = 200
    concurrency: int = 16  # calls processed at once (bounded by the pool)
    push_concurrency: int = 64  # sends in flight per provider
    push_timeout_seconds: float = 5.0
    push_max_attempts: int = 5
    push_retry_base_seconds: float = 0.5
    push_retry_max_seconds: float = 30.0
    prune_quarantine_seconds: float = 30.0  # see engine/pruning.py
    job_max_attempts: int = 3
    job_retry_base_seconds: float = 0.5
    shutdown_grace_seconds: float = 10.0
    idle_floor_seconds: float = 0.05  # never spin: the shortest sleep after an empty sweep
    stats_interval: float = 5.0
    # /readyz: a sweep must have succeeded this recently (contract: max(2 x reconcile, 10 s)).
    readiness_window: float = 10.0
    # /healthz: the loop must have gone round this recently (max(30 s, 3 x reconcile)).
    liveness_window: float = 30.0
