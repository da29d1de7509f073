"""The pruning brake: stop disabling devices when a provider's "dead token" answers look like an
outage or a misconfiguration (wrong APNs environment, wrong FCM project) rather than dead tokens.

Per provider, a sliding window (5 min) of results. Pruning is braked while at least `min_prunes`
prune-candidate results make up more than `ratio` of the provider's results in the window.
Pure: the caller passes `now` (monotonic seconds). Results are counted in 1-second buckets, so
memory stays bounded (≤ window buckets per provider) whatever the push rate; a result leaves the
window once its bucket's start is `window` or more seconds old.

At most one prune candidate per recipient user counts in the window (abuse limits): one account
registering garbage tokens would otherwise engage the brake for the whole provider and keep
every user's dead tokens from being pruned. A further candidate of a user already counted is
left out entirely (neither a prune nor a result), so a misconfiguration that hits at least
`min_prunes` distinct users still engages the brake however many devices each of them has.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Protocol

WINDOW_SECONDS = 300.0


@dataclass(slots=True)
class _Bucket:
    second: int
    prunes: int = 0
    total: int = 0
    users: list[Hashable] = field(default_factory=list)  # whose candidate counted here


@dataclass(slots=True)
class _Window:
    buckets: deque[_Bucket] = field(default_factory=deque)
    prunes: int = 0
    total: int = 0
    counted: dict[Hashable, int] = field(default_factory=dict)  # user -> bucket second


class PruneBrake:
    def __init__(
        self, min_prunes: int, ratio: float, window_seconds: float = WINDOW_SECONDS
    ) -> None:
        if min_prunes < 1 or not 0.0 <= ratio <= 1.0 or window_seconds <= 0:
            raise ValueError("min_prunes >= 1, 0 <= ratio <= 1 and window_seconds > 0")
        self.min_prunes = min_prunes
        self.ratio = ratio
        self.window = window_seconds
        self._windows: dict[str, _Window] = {}

    def record(
        self, provider: str, prune_candidate: bool, now: float, user: Hashable | None = None
    ) -> None:
        """Every provider answer counts: accepted, retry, permanent, and prune candidates (also
        those the brake then stops, so that the brake stays on while the failures go on) —
        except a second prune candidate of the same recipient `user` within the window."""
        window = self._expire(provider, now)
        if prune_candidate and user is not None and user in window.counted:
            return
        second = math.floor(now)
        if not window.buckets or window.buckets[-1].second < second:
            window.buckets.append(_Bucket(second))
        bucket = window.buckets[-1]  # a clock that went backwards joins the newest bucket
        bucket.total += 1
        window.total += 1
        if prune_candidate:
            bucket.prunes += 1
            window.prunes += 1
            if user is not None:
                bucket.users.append(user)
                window.counted[user] = bucket.second

    def counts(self, provider: str, now: float) -> tuple[int, int]:
        """(prune candidates, all results) in the window."""
        window = self._expire(provider, now)
        return window.prunes, window.total

    def allows_prune(self, provider: str, now: float) -> bool:
        prunes, total = self.counts(provider, now)
        return not (prunes >= self.min_prunes and prunes > self.ratio * total)

    def _expire(self, provider: str, now: float) -> _Window:
        window = self._windows.setdefault(provider, _Window())
        while window.buckets and window.buckets[0].second <= now - self.window:
            old = window.buckets.popleft()
            window.prunes -= old.prunes
            window.total -= old.total
            for user in old.users:
                if window.counted.get(user) == old.second:
                    del window.counted[user]
        return window


# What the engine sees of a brake (PruneBrake, or NoBrake in unit tests not about the brake).
class Brake(Protocol):
    def record(
        self, provider: str, prune_candidate: bool, now: float, user: Hashable | None = None
    ) -> None: ...

    def allows_prune(self, provider: str, now: float) -> bool: ...


class NoBrake:
    """Always prunes (unit tests that are not about the brake)."""

    def record(
        self, provider: str, prune_candidate: bool, now: float, user: Hashable | None = None
    ) -> None:
        return None

    def allows_prune(self, provider: str, now: float) -> bool:
        return True
