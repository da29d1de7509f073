"""The engine's view of the pruning brake (the policy lives in orchestrator.domain.brake)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol


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
