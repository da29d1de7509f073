"""Percentiles, repeated-run summaries (median with min/max) and slopes."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_ms(seconds: Sequence[float]) -> dict[str, float | int]:
    """p50/p95/p99/max (and mean, min) of durations given in seconds, in milliseconds."""
    if not seconds:
        return {"n": 0}
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3),
        "min_ms": round(min(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def repeated(values: Iterable[float], digits: int = 3) -> dict[str, Any]:
    """Median of repeated runs with min and max, and every run's value."""
    runs = [v for v in values if v is not None and not math.isnan(v)]
    if not runs:
        return {"median": None, "min": None, "max": None, "runs": []}
    return {
        "median": round(statistics.median(runs), digits),
        "min": round(min(runs), digits),
        "max": round(max(runs), digits),
        "runs": [round(v, digits) for v in runs],
    }


def repeated_dists(dists: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """For each statistic (p50_ms …), the median over the runs with min/max."""
    return {k: repeated(d[k] for d in dists if k in d) for k in keys}


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over t (seconds), per minute."""
    if len(points) < 3:
        return 0.0
    ts = [p[0] for p in points]
    ys = [p[1] for p in points]
    t_mean, y_mean = statistics.fmean(ts), statistics.fmean(ys)
    var = sum((t - t_mean) ** 2 for t in ts)
    if var == 0:
        return 0.0
    cov = sum((t - t_mean) * (y - y_mean) for t, y in zip(ts, ys, strict=True))
    return 60 * cov / var


def histogram(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    counts = [0] * (len(edges) + 1)
    for v in values:
        i = 0
        while i < len(edges) and v > edges[i]:
            i += 1
        counts[i] += 1
    return counts
