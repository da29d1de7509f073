"""What the worker in this process reports, for "Now" under `worker --serve`.

There the token server shares the worker's Metrics, so the brake's own gauge (the worker's
in-memory decision, not the database's estimate) and its queue gauges can be shown. Under
`orchestrator serve` alone no worker has scanned or run anything and this returns None.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.metrics import Metrics


@dataclass(frozen=True, slots=True)
class WorkerView:
    brake: dict[str, bool]  # provider -> engaged
    queue_depth: float
    queue_age: float
    jobs: float


def worker_view(metrics: Metrics) -> WorkerView | None:
    values: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            values.setdefault(sample.name, []).append((sample.labels, sample.value))
    jobs = sum(v for _, v in values.get("orchestrator_jobs_total", []))
    # A worker's first round scans everything, so a worker in this process has counted a scan
    # even before any job came its way (an accept leaves it none: issue 14).
    scans = sum(v for _, v in values.get("orchestrator_reconciles_total", []))
    if not jobs and not scans:
        return None
    brake = {
        labels["provider"]: value > 0
        for labels, value in values.get("orchestrator_prune_brake_engaged", [])
        if "provider" in labels
    }

    def gauge(name: str) -> float:
        found = values.get(name, [])
        return found[0][1] if found else 0.0

    return WorkerView(
        brake=brake,
        queue_depth=gauge("orchestrator_queue_depth"),
        queue_age=gauge("orchestrator_queue_oldest_age_seconds"),
        jobs=jobs,
    )
