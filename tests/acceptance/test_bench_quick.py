"""`BENCH_QUICK=1 orchestrator bench` as a smoke test: every scenario runs and reports numbers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

# serial: timing and CPU figures; `make test` runs these alone, after the parallel part.
pytestmark = [pytest.mark.postgres, pytest.mark.serial]

SCENARIOS = (
    "time_to_ring", "throughput", "timers", "replicas", "soak", "push", "tokens", "presence",
    "abuse",
)  # fmt: skip
# One number per scenario that only a run that did the work can produce.
FIGURES = {
    "time_to_ring": ("summary", "p99_ms", "median"),
    "throughput": ("ratio", "median"),
    "timers": ("lateness", "p99_ms"),
    "replicas": ("by_workers", "4", "transitions_per_s", "median"),
    "soak": ("rss_mb", "slope_mb_per_min"),
    "push": ("fcm", "engine_per_s", "median"),
    "tokens": ("tokens_per_s", "median"),
    "presence": ("timers", "lateness", "p99_ms"),
    "abuse": ("ratio_p99",),
}


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def test_quick_bench_writes_every_scenario(fresh_dsn: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": fresh_dsn,
        "BENCH_QUICK": "1",
        "BENCH_OUT": str(tmp_path),
        "LOG_FORMAT": "json",
    }
    env.pop("BENCH_ONLY", None)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "bench"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # About 50 s alone on the 2-core class (ten scenarios); the bound leaves room for a loaded
    # machine while still catching a scenario whose quick mode stopped being quick.
    assert took < 120, f"the quick bench took {took:.0f} s: {_scenario_seconds(tmp_path)}"
    for name in ("latest.json", "latest.md", "latest.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    document = json.loads((tmp_path / "latest.json").read_text())
    assert document["meta"]["mode"] == "quick"
    scenarios = document["scenarios"]
    for name in SCENARIOS:
        assert "error" not in scenarios[name], (name, scenarios[name].get("error"))
        value = _dig(scenarios[name], FIGURES[name])
        assert isinstance(value, int | float) and math.isfinite(value), (name, value)
    # Work really happened, exactly once: every call rang, no push went out twice.
    assert scenarios["time_to_ring"]["lost"] == 0
    assert scenarios["timers"]["still_ringing"] == 0
    presence = scenarios["presence"]
    assert presence["timers"]["ended_connection_lost"] == presence["timers"]["calls"]
    assert presence["ncs"]["notices_per_s"] > 0
    assert scenarios["throughput"]["runs"][0]["worker"]["lifecycles"] > 0
    duplicates = next(t for t in document["targets"] if t["target"].startswith("duplicates"))
    assert duplicates["measured"] == 0
    assert all(t["pass"] is None for t in document["targets"])  # no thresholds when quick
    assert "## Targets" in (tmp_path / "latest.md").read_text()


def _scenario_seconds(out: Path) -> object:
    try:
        return json.loads((out / "latest.json").read_text())["meta"].get("scenario_seconds")
    except (OSError, ValueError, KeyError):
        return "no report"
