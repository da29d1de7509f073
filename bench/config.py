"""How big and how long each scenario is: the full run (for people) and the quick run (CI)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "bench" / "results"


@dataclass(frozen=True)
class BenchConfig:
    quick: bool = False
    out: Path = DEFAULT_OUT
    repeats: int = 3
    # 1. time-to-ring: open-loop inserts at a fixed rate
    ring_rate: float = 100.0
    ring_seconds: float = 30.0
    # 2. throughput vs ceiling: closed-loop lifecycles, `clients` in flight
    clients: int = 32
    throughput_seconds: float = 10.0
    # 3. timers at scale
    timer_calls: int = 100_000
    timer_spread: tuple[float, float] = (60.0, 120.0)  # deadlines, seconds after seeding
    # 4. replicas
    replica_counts: tuple[int, ...] = (1, 2, 4)
    replica_seconds: float = 8.0
    replica_repeats: int = 2
    # 5. soak: open-loop lifecycles at a fixed rate, time-boxed (or a lifecycle count)
    soak_seconds: float = 600.0
    soak_rate: float = 100.0
    soak_lifecycles: int = 0  # BENCH_SOAK_LIFECYCLES=1000000: run until that many, closed loop
    # 6. push throughput and the token server
    push_deliveries: int = 5_000
    token_seconds: float = 5.0
    token_clients: int = 32
    # 7. abuse: bystander time-to-ring with and without one account fanning out to the cap
    abuse_rate: float = 50.0
    abuse_seconds: float = 8.0  # per phase; quiet and attacked phases alternate
    abuse_rounds: int = 3
    # the profile of the hot path (pyinstrument, scenario 2's load)
    profile_seconds: float = 15.0
    worker_pool: int = 8  # DB_POOL_SIZE of every worker process (its default)
    only: tuple[str, ...] = ()  # BENCH_ONLY=timers,soak: a subset (never updates the README)
    wake_slots: int | None = None  # BENCH_WAKE_SLOTS: the workers' WAKE_SLOTS (0: before #14)

    @classmethod
    def from_env(cls) -> BenchConfig:
        quick = os.environ.get("BENCH_QUICK", "").strip() not in ("", "0", "false", "no")
        config = cls.quick_run() if quick else cls()
        out = os.environ.get("BENCH_OUT")
        if out:
            config = replace(config, out=Path(out).resolve())
        overrides: dict[str, object] = {}
        for name, env in (
            ("soak_seconds", "BENCH_SOAK_SECONDS"),
            ("soak_lifecycles", "BENCH_SOAK_LIFECYCLES"),
            ("repeats", "BENCH_REPEATS"),
            ("timer_calls", "BENCH_TIMER_CALLS"),
        ):
            value = os.environ.get(env)
            if value:
                kind = type(getattr(config, name))
                overrides[name] = kind(float(value)) if kind is int else kind(value)
        slots = os.environ.get("BENCH_WAKE_SLOTS", "").strip()
        if slots:
            overrides["wake_slots"] = int(slots)
        only = os.environ.get("BENCH_ONLY", "")
        if only.strip():
            overrides["only"] = tuple(x.strip() for x in only.split(",") if x.strip())
        return replace(config, **overrides)  # type: ignore[arg-type]

    @classmethod
    def quick_run(cls) -> BenchConfig:
        """Every scenario, small and short: well under 60 s on two cores, no thresholds."""
        return cls(
            quick=True,
            repeats=1,
            ring_seconds=2.0,
            clients=16,
            throughput_seconds=1.5,
            timer_calls=5_000,
            timer_spread=(2.0, 4.0),
            replica_seconds=1.0,
            replica_repeats=1,
            soak_seconds=3.0,
            soak_rate=50.0,
            push_deliveries=500,
            token_seconds=1.0,
            token_clients=16,
            abuse_rate=20.0,
            abuse_seconds=0.75,
            abuse_rounds=1,
            profile_seconds=0.0,  # no profile in the quick run
        )

    def as_dict(self) -> dict[str, object]:
        result: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            result[f.name] = str(value) if isinstance(value, Path) else value
        return result
