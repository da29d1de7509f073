"""`orchestrator demo` end to end, as a newcomer runs it: every end reason, exit 0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.postgres

REASONS = (
    "completed",
    "declined",
    "cancelled",
    "missed",
    "busy",
    "unreachable",
    "failed",
    "max_duration",
    "glare",
    "connection_lost",
)


def test_demo_shows_all_ten_end_reasons(fresh_dsn: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "demo"],
        env={**os.environ, "DATABASE_URL": fresh_dsn, "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all ten end reasons shown" in result.stdout
    summary = result.stdout.split("scenario", 1)[1]
    for reason in REASONS:
        assert f" {reason} " in summary
    assert "MISMATCH" not in summary
    assert "demo-" not in result.stdout + result.stderr  # device tokens never printed
