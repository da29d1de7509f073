"""Worker processes for crash, restart and replica tests: real `orchestrator worker` binaries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.support.worker import SHORT_TIMERS


class WorkerProcess:
    def __init__(self, dsn: str, log_path: Path, worker_id: str, **env: str) -> None:
        self.log_path = log_path
        environment = {
            **os.environ,
            **SHORT_TIMERS,
            "DATABASE_URL": dsn,
            "PUSH_DRY_RUN": "1",
            "WORKER_ID": worker_id,
            "LOG_LEVEL": "info",
            **env,
        }
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "worker"],
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def events(self) -> list[dict[str, object]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found

    def subscribed(self) -> bool:
        return any(e.get("event") == "listen_subscribed" for e in self.events())

    def terminate(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def wait(self, timeout: float = 20) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()


def sends_per_delivery(*workers: WorkerProcess) -> Counter[int]:
    """How often each delivery went to a provider, across every worker's log."""
    counts: Counter[int] = Counter()
    for worker in workers:
        for event in worker.events():
            if event.get("event") == "push_dry_run":  # the provider itself saw it
                counts[int(event["delivery_id"])] += 1  # type: ignore[call-overload]
    return counts
