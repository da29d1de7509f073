"""Per-user and per-IP rate limits (`limits`, moving window): in memory, or Redis when shared."""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections.abc import Iterable

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from orchestrator.config import Settings

STORAGE_TIMEOUT = 1.0  # a slow Redis must not hold requests: it counts as down


class RateLimited(Exception):
    def __init__(self, scope: str, retry_after: int) -> None:
        super().__init__(f"{scope} rate limit reached")
        self.scope = scope
        self.retry_after = retry_after


class RateLimitUnavailable(Exception):
    """The shared storage (Redis) did not answer."""


def storage_uri(redis_url: str | None) -> str:
    """The `limits` async storage for REDIS_URL (redis://, rediss://, unix://) or memory."""
    if not redis_url:
        return "async+memory://"
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    return "async+" + redis_url


class RateLimiter:
    def __init__(
        self,
        per_user: str,
        per_ip: str,
        storage: str = "async+memory://",
        *,
        key_prefix: str = "orchestrator-token",
    ) -> None:
        self.per_user: RateLimitItem = parse(per_user)
        self.per_ip: RateLimitItem = parse(per_ip)
        self.shared = not storage.startswith("async+memory")
        self._storage: Storage
        if self.shared:
            backend = storage_from_string(storage, key_prefix=key_prefix, wrap_exceptions=True)
            assert isinstance(backend, Storage)
            self._storage = backend
        else:
            self._storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._prefix = key_prefix

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        return cls(
            settings.rate_limit_per_user,
            settings.rate_limit_per_ip,
            storage_uri(settings.redis_url),
        )

    async def hit_user(self, user_id: str) -> None:
        await self._hit("user", self.per_user, user_id)

    async def hit_ip(self, ip: str) -> None:
        await self._hit("ip", self.per_ip, ip)

    async def _hit(self, scope: str, item: RateLimitItem, identifier: str) -> None:
        try:
            async with asyncio.timeout(STORAGE_TIMEOUT):
                if await self._limiter.hit(item, self._prefix, scope, identifier):
                    return
                stats = await self._limiter.get_window_stats(item, self._prefix, scope, identifier)
        except Exception as exc:  # storage errors, timeouts, lost connections
            raise RateLimitUnavailable(type(exc).__name__) from None
        raise RateLimited(scope, max(1, math.ceil(stats.reset_time - time.time())))

    async def healthy(self) -> bool:
        try:
            async with asyncio.timeout(STORAGE_TIMEOUT):
                return bool(await self._storage.check())
        except Exception:
            return False


def client_ip(peer: str | None, forwarded_for: Iterable[str], trusted_hops: int) -> str:
    """The client address: the peer, or the entry `trusted_hops` from the right of X-Forwarded-For.

    Entries left of the trusted ones were written by the client and are ignored; a header with
    fewer entries than trusted hops, or a malformed entry, falls back to the peer.
    """
    fallback = peer or "unknown"
    if trusted_hops <= 0:
        return fallback
    hops = [part.strip() for value in forwarded_for for part in value.split(",")]
    if len(hops) < trusted_hops:
        return fallback
    candidate = hops[-trusted_hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return fallback
