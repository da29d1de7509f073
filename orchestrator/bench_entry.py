"""`orchestrator bench`: a thin door into the `bench` package at the repository's root.

The benchmarks live beside the code they measure (bench/, not part of the installed package);
they need a source checkout, which is where `make bench` runs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

from orchestrator.config import Settings

REPO = Path(__file__).resolve().parents[1]


async def run_bench(settings: Settings) -> int:
    if not (REPO / "bench" / "runner.py").is_file():
        print(
            f"orchestrator bench: no bench/ package beside {REPO / 'orchestrator'}; "
            "run it from a source checkout (`make bench`)",
            file=sys.stderr,
        )
        return 2
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    runner = importlib.import_module("bench.runner")
    run = cast(Callable[[Settings], Awaitable[int]], runner.run)
    return int(await run(settings))
