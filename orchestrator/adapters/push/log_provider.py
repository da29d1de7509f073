"""Dry-run provider: logs the push (never its token) and reports it accepted."""

from __future__ import annotations

from orchestrator.domain.push import Accepted, PushMessage, PushResult
from orchestrator.logs import get_logger

log = get_logger(__name__)


class LogPushProvider:
    name = "log"

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, message: PushMessage) -> PushResult:
        self.sent += 1
        log.info(
            "push_dry_run",
            delivery_id=message.delivery_id,
            call_id=str(message.call_id),
            kind=message.kind.value,
            platform=message.platform.value,
            seq=message.seq,
        )
        return Accepted(f"log-{message.delivery_id}")

    async def close(self) -> None:
        return None
