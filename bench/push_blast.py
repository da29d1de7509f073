"""`python -m bench.push_blast PLATFORM N CONCURRENCY`: the fakes' own ceiling.

The worker's provider (FcmProvider / ApnsProvider, built by `build_providers` from the same
environment as the worker's) sends N ring pushes as fast as CONCURRENCY in-flight sends allow
(the engine's PUSH_CONCURRENCY), from a process of its own like the worker: no database, no
engine. Prints one JSON line: accepted, failed, seconds.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from orchestrator import logs
from orchestrator.adapters.push.factory import build_providers
from orchestrator.config import Settings
from orchestrator.domain.model import Platform, PushKind
from orchestrator.domain.push import Accepted, PushMessage
from orchestrator.metrics import Metrics


def _message(i: int, platform: Platform) -> PushMessage:
    ios = platform is Platform.IOS
    return PushMessage(
        delivery_id=i + 1,
        call_id=uuid.uuid4(),
        kind=PushKind.RING,
        seq=1,
        expires_at=datetime.now(UTC) + timedelta(seconds=45),
        caller_id=uuid.uuid4(),
        caller_name=f"User {i}",
        video=True,
        platform=platform,
        # APNs tokens are hex: "ok-" hex-encoded (the fakes' behaviour prefix), then the index.
        token=f"6f6b2d{i:064x}" if ios else f"ok-fcm-{i:032d}",
        voip_token=f"6f6b2d{i + 1:064x}" if ios else None,
        apns_environment=None,
    )


async def blast(platform: Platform, n: int, concurrency: int) -> dict[str, float]:
    settings = Settings.from_env()
    provider = build_providers(settings, Metrics(), timed=False)[platform]
    limit = asyncio.Semaphore(concurrency)
    accepted = 0
    messages = [_message(i, platform) for i in range(n)]
    await provider.send(_message(n, platform))  # connect and authenticate first

    async def one(message: PushMessage) -> None:
        nonlocal accepted
        async with limit:
            if isinstance(await provider.send(message), Accepted):
                accepted += 1

    started = time.monotonic()
    await asyncio.gather(*(one(m) for m in messages))
    seconds = time.monotonic() - started
    await provider.close()
    return {"accepted": accepted, "failed": n - accepted, "seconds": round(seconds, 4)}


def main() -> int:
    platform, n, concurrency = Platform(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    logs.configure("json", "warning")
    import uvloop

    print(json.dumps(uvloop.run(blast(platform, n, concurrency))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
