"""`orchestrator worker`, the real command in a real process, with a test hook that makes one
background task die once the worker runs: DIE_TASK=event-source (the LISTEN source raises) or
DIE_TASK=lease-renewal (the lease task raises). Used by tests/integration/test_supervision.py."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from orchestrator import cli
from orchestrator.adapters.postgres.listen_source import ListenNotifySource
from orchestrator.engine.engine import Engine

DELAY = float(os.environ.get("DIE_AFTER_SECONDS", "1"))


def _hook_event_source() -> None:
    original = ListenNotifySource.run

    async def run(self: ListenNotifySource, wake: Any) -> None:
        inner = asyncio.create_task(original(self, wake))
        while not self.healthy:
            await asyncio.sleep(0.01)
        await asyncio.sleep(DELAY)
        inner.cancel()
        raise RuntimeError("test hook: the event source died")

    ListenNotifySource.run = run  # type: ignore[method-assign]


def _hook_lease_task() -> None:
    async def renew(self: Engine) -> None:
        await asyncio.sleep(DELAY)
        raise RuntimeError("test hook: the lease task died")

    Engine._renew_leases = renew  # type: ignore[method-assign]


if __name__ == "__main__":
    {"event-source": _hook_event_source, "lease-renewal": _hook_lease_task}[
        os.environ["DIE_TASK"]
    ]()
    sys.exit(cli.main(["worker"]))
