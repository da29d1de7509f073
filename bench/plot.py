"""latest.png: latency distributions (time-to-ring, timer lateness) and throughputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _cdf(ax: Any, samples: list[float], label: str) -> None:
    if not samples:
        return
    ordered = sorted(samples)
    n = len(ordered)
    ax.plot(ordered, [(i + 1) / n for i in range(n)], label=label, linewidth=1.2)


def _bars(ax: Any, labels: list[str], entries: list[dict[str, Any] | None], color: str) -> None:
    medians = [(e or {}).get("median") or 0 for e in entries]
    low = [m - ((e or {}).get("min") or m) for m, e in zip(medians, entries, strict=True)]
    high = [((e or {}).get("max") or m) - m for m, e in zip(medians, entries, strict=True)]
    ax.bar(labels, medians, yerr=[low, high], color=color, capsize=4)
    for i, m in enumerate(medians):
        ax.annotate(f"{m:,.0f}", (i, m), ha="center", va="bottom", fontsize=8)


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def plot(document: dict[str, Any], path: Path) -> None:
    s = document["scenarios"]
    meta = document["meta"]
    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    fig.suptitle(
        f"orchestrator bench — {meta['mode']} run {meta['started_at']} "
        f"({meta['cores']} cores, commit {meta.get('commit')})",
        fontsize=12,
    )

    ax = axes[0][0]
    for i, run in enumerate(_get(s, "time_to_ring", "runs") or []):
        _cdf(ax, run.get("samples_ms") or [], f"run {i + 1}")
    ax.axvline(5, color="green", linestyle="--", linewidth=0.8, label="p50 target 5 ms")
    ax.axvline(20, color="red", linestyle="--", linewidth=0.8, label="p99 target 20 ms")
    ax.axhline(0.99, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("commit ack → ring at the fake (ms)")
    ax.set_ylabel("fraction of calls")
    ax.set_title("1. time-to-ring (CDF)")
    ax.legend(fontsize=7)

    ax = axes[0][1]
    tp = s.get("throughput") or {}
    reps = _get(s, "replicas", "by_workers") or {}
    labels = ["worker", "ceiling"] + [f"{k} worker(s)" for k in reps]
    entries = [tp.get("worker_transitions_per_s"), tp.get("ceiling_transitions_per_s")] + [
        v.get("transitions_per_s") for v in reps.values()
    ]
    _bars(ax, labels, entries, "tab:blue")
    ax.set_ylabel("transitions/s (median, min–max)")
    ratio = _get(tp, "ratio", "median")
    ax.set_title(
        "2./4. lifecycles: worker vs ceiling, replicas"
        + (f" (worker = {100 * ratio:.0f} % of ceiling)" if ratio else "")
    )
    ax.tick_params(axis="x", labelsize=8)

    ax = axes[0][2]
    timers = s.get("timers") or {}
    _cdf(ax, timers.get("lateness_samples_ms") or [], f"{timers.get('calls', 0):,} timers")
    ax.axvline(250, color="red", linestyle="--", linewidth=0.8, label="p99 target 250 ms")
    ax.axhline(0.99, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("ended_at − ring_deadline (ms)")
    ax.set_ylabel("fraction of timers")
    ax.set_title(f"3. timer lateness (CDF), RSS peak {timers.get('worker_rss_peak_mb')} MB")
    ax.legend(fontsize=7)

    ax = axes[1][0]
    samples = _get(s, "soak", "samples") or []
    if samples:
        ax.plot([p[0] for p in samples], [p[1] for p in samples], color="tab:purple")
        ax.set_ylabel("worker RSS (MB)", color="tab:purple")
        twin = ax.twinx()
        twin.plot([p[0] for p in samples], [p[2] for p in samples], color="tab:orange")
        twin.set_ylabel("asyncio tasks", color="tab:orange")
    rss = _get(s, "soak", "rss_mb", "slope_mb_per_min")
    tasks = _get(s, "soak", "tasks", "slope_per_min")
    ax.set_xlabel("seconds")
    ax.set_title(f"5. soak: RSS slope {rss} MB/min, tasks {tasks}/min")

    ax = axes[1][1]
    push = s.get("push") or {}
    labels, entries = [], []
    for name in ("fcm", "apns"):
        if name in push:
            labels += [f"{name} engine", f"{name} fake ceiling"]
            entries += [push[name].get("engine_per_s"), push[name].get("fake_ceiling_per_s")]
    if labels:
        _bars(ax, labels, entries, "tab:green")
    ax.set_ylabel("deliveries/s (median, min–max)")
    ax.set_title("6. push throughput: engine vs the fake's own ceiling")
    ax.tick_params(axis="x", labelsize=8)

    ax = axes[1][2]
    lines = []
    for run in _get(s, "tokens", "runs") or []:
        lat = run.get("latency") or {}
        lines.append(
            f"{run['tokens_per_s']:,.0f} tokens/s  p50 {lat.get('p50_ms')} ms  "
            f"p99 {lat.get('p99_ms')} ms"
        )
    for row in document["targets"]:
        verdict = {True: "pass", False: "MISSED", None: "–"}[row["pass"]]
        lines.append(f"{verdict:>6}  {row['target']}: {row['measured']} {row['unit']}")
    ax.axis("off")
    ax.set_title("6. token server runs, and the targets")
    ax.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=8)

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
