"""Dead-token pruning behind the brake, with a quarantine.

A prune candidate's delivery fails at once, but its device is disabled only when the
quarantine is over and the brake still allows it. Deciding each answer as it arrives would
let the first PRUNE_BRAKE_MIN − 1 of a misconfiguration's "dead" answers through; waiting lets
the wave show itself first (every token looking dead at once is a sandbox/production, bundle
or Firebase-project mix-up, not dead devices).
"""

from __future__ import annotations

from orchestrator.domain.brake import Brake
from orchestrator.logs import get_logger
from orchestrator.metrics import Metrics
from orchestrator.ports import CallStore

log = get_logger("orchestrator.push")


class PruneQuarantine:
    def __init__(self, store: CallStore, brake: Brake, metrics: Metrics, seconds: float) -> None:
        self.store = store
        self.brake = brake
        self.metrics = metrics
        self.seconds = seconds
        self._held: list[tuple[float, str, int]] = []  # (decide at, provider, delivery id)
        self._braked: dict[str, bool] = {}

    def hold(self, delivery_id: int, provider: str, now: float) -> None:
        self._held.append((now + self.seconds, provider, delivery_id))

    @property
    def pending(self) -> int:
        return len(self._held)

    async def settle(self, now: float) -> None:
        """Decide every candidate whose quarantine is over: prune, or keep (braked)."""
        due = [item for item in self._held if item[0] <= now]
        if not due:
            return
        self._held = [item for item in self._held if item[0] > now]
        prune: list[int] = []
        keep: list[int] = []
        for _, provider, delivery_id in due:
            allowed = self.brake.allows_prune(provider, now)
            self._state(provider, engaged=not allowed)
            (prune if allowed else keep).append(delivery_id)
            if allowed:
                self.metrics.devices_pruned.labels(provider).inc()
        try:
            await self.store.settle_prunes(prune, keep)
        except Exception as exc:  # the next call will find the dead token again
            log.warning("prune_not_recorded", error=type(exc).__name__, devices=len(prune))

    def _state(self, provider: str, *, engaged: bool) -> None:
        if engaged != self._braked.get(provider, False):
            self._braked[provider] = engaged
            (log.error if engaged else log.warning)(
                "prune_brake_engaged" if engaged else "prune_brake_released", provider=provider
            )
        self.metrics.prune_brake.labels(provider).set(1 if engaged else 0)
