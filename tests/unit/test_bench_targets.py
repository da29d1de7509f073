"""The bench's issue-14 target rows: soak time-to-ring p99 and push CPU per 1,000 deliveries
(worker + PostgreSQL), pass/fail in the full run, never judged in the quick run."""

from __future__ import annotations

from typing import Any

from bench.report import targets


def _push(worker: float, postgres: float) -> dict[str, Any]:
    return {
        "worker_cpu_s_per_1000": {"median": worker},
        "postgres_cpu_s_per_1000": {"median": postgres},
    }


RESULTS = {
    "soak": {"ring_latency": {"p99_ms": 60.0}},
    "push": {"fcm": _push(0.1, 0.1), "apns": _push(0.2, 0.1)},
}


def _row(rows: list[dict[str, Any]], start: str) -> dict[str, Any]:
    return next(r for r in rows if r["target"].startswith(start))


def test_soak_and_push_cpu_are_judged_in_the_full_run() -> None:
    rows = targets(RESULTS, quick=False)
    soak = _row(rows, "soak: time-to-ring p99")
    assert (soak["measured"], soak["pass"], soak["gap"]) == (60.0, False, 10.0)
    fcm = _row(rows, "push CPU per 1,000 deliveries, fcm")
    apns = _row(rows, "push CPU per 1,000 deliveries, apns")
    assert (fcm["measured"], fcm["pass"]) == (0.2, True)
    assert (apns["measured"], apns["pass"]) == (0.3, False)


def test_a_scenario_not_run_is_not_judged() -> None:
    rows = targets({}, quick=False)
    assert _row(rows, "soak: time-to-ring p99")["pass"] is None
    assert _row(rows, "push CPU per 1,000 deliveries, fcm")["measured"] is None
    assert all(r["pass"] is None for r in targets(RESULTS, quick=True))
