"""`python -m bench`: the same as `orchestrator bench` (from the repository root)."""

from __future__ import annotations

import sys

from orchestrator.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench"]))
