"""The worker loop: wake-ups and timers drive sweeps of due work; leases are renewed;
SIGTERM stops claiming, finishes what is in flight and gives back what is not."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from uuid import UUID

from orchestrator.domain.brake import Brake, NoBrake
from orchestrator.domain.model import ENDS_WITHOUT_WORK, Platform
from orchestrator.domain.work import Ended
from orchestrator.engine import timers
from orchestrator.engine.deliveries import Sender
from orchestrator.engine.jobs import JobRunner, PickupHook
from orchestrator.engine.settings import EngineSettings
from orchestrator.engine.supervision import Supervisor, Vitals
from orchestrator.engine.transient import is_conflict
from orchestrator.logs import exception_fields, get_logger
from orchestrator.metrics import Metrics
from orchestrator.ports import CallStore, Clock, EventSource, PushProvider, Wakeup

log = get_logger("orchestrator.worker")


class Engine:
    def __init__(
        self,
        store: CallStore,
        providers: Mapping[Platform, PushProvider],
        settings: EngineSettings,
        metrics: Metrics,
        clock: Clock,
        *,
        brake: Brake | None = None,
        pickup_hook: PickupHook | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.inflight_jobs: set[int] = set()
        self.inflight_deliveries: set[int] = set()
        self.sender = Sender(
            store,
            providers,
            settings,
            metrics,
            clock,
            brake or NoBrake(),
            self._ended,
            self.inflight_deliveries,
        )
        self.sender.on_retry = lambda call_id: self.wake(Wakeup(call_id))
        self.jobs = JobRunner(store, settings, metrics, clock, self._ended, pickup_hook)
        self._targets: set[UUID] = set()
        self._rescan = True  # the first sweep looks at everything: resume every timer
        self._kick = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.concurrency)
        self.source_name = "none"
        self.vitals = Vitals(clock, settings.readiness_window, settings.liveness_window)
        self.supervisor = Supervisor(self._kick.set, clock)  # a death ends the loop at once

    def wake(self, wakeup: Wakeup) -> None:
        """The event source's sink: synchronous, never raises."""
        if wakeup.call_id is None:
            self._rescan = True
        elif wakeup.end_reason not in ENDS_WITHOUT_WORK:
            self._targets.add(wakeup.call_id)
        if wakeup.client_end_reason is not None:
            self.metrics.calls_ended.labels(wakeup.client_end_reason).inc()
        self.metrics.wakeups.labels(self.source_name).inc()
        self._kick.set()

    async def run(self, stop: asyncio.Event, source: EventSource | None = None) -> None:
        """Until `stop`; raises BackgroundTaskDied (after draining) when a helper died."""
        watch = self.supervisor.watch
        watch(asyncio.create_task(self._renew_leases(), name="lease-renewal"))
        listening: asyncio.Task[None] | None = None
        if source is not None:
            self.source_name = source.name
            listening = asyncio.create_task(source.run(self.wake), name="event-source")
            watch(listening)
        stopper = asyncio.create_task(stop.wait())
        try:
            await self._loop(stop, stopper)
        finally:
            self.supervisor.stopping = True  # from here on, helpers ending is the plan
            if listening is not None:
                # Stop listening before draining: the source's wake-up slots (listen_source)
                # go to the other workers now, not after the grace period.
                listening.cancel()
            await self._drain()
            await self.supervisor.stop()
            stopper.cancel()
        if self.supervisor.fatal is not None:
            raise self.supervisor.fatal

    async def _loop(self, stop: asyncio.Event, stopper: asyncio.Task[bool]) -> None:
        last_stats = -1e9
        scan_at: float | None = None
        while not stop.is_set() and self.supervisor.fatal is None:
            self.vitals.tick()
            self._kick.clear()
            rescan, targets = self._rescan, self._targets
            self._rescan, self._targets = False, set()
            found = 0
            try:
                if rescan:
                    scan_at = None  # this scan covers every timer due so far
                    found = await self._sweep_all()
                for call_id in targets:
                    await self._spawn(call_id)
                if self.clock.monotonic() - last_stats > self.settings.stats_interval:
                    last_stats = self.clock.monotonic()
                    depth, age = await self.store.queue_stats()
                    self.metrics.queue_depth.set(depth)
                    self.metrics.queue_age.set(age)
                due = await self.store.seconds_until_due()
                self.vitals.sweep_succeeded()
            except Exception as exc:  # the database is away: keep trying, lose nothing
                if is_conflict(exc):  # e.g. a migration's DDL: rolled back, scan again
                    log.info("sweep_conflict", error=type(exc).__name__)
                    self._rescan = True
                else:
                    self.vitals.sweep_failed()  # /readyz says so until one succeeds again
                    log.warning("sweep_failed", **exception_fields(exc))
                due, found = self.settings.reconcile_interval / 5, 0
            timeout = self.settings.reconcile_interval if due is None else due
            timeout = min(
                max(timeout, 0.0 if found else self.settings.idle_floor_seconds),
                self.settings.reconcile_interval,
            )
            # When the next timer (or the backstop) is due, on the local monotonic clock, kept
            # across rounds: a steady stream of client wake-ups (each only for its own call)
            # must not keep a due timer of another call waiting.
            candidate = self.clock.monotonic() + timeout
            scan_at = candidate if scan_at is None else min(scan_at, candidate)
            if timeout > 0 and not self._kick.is_set():
                kicked = asyncio.create_task(self._kick.wait())
                await timers.wait_any(self.clock, {kicked, stopper}, timeout)
                kicked.cancel()
            if not self._kick.is_set() or timeout <= 0 or self.clock.monotonic() >= scan_at:
                self._rescan = True  # a timer fell due, or the backstop interval passed
                scan_at = None

    async def _spawn(self, call_id: UUID | None) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(self._sweep_guarded(call_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep_guarded(self, call_id: UUID | None) -> None:
        try:
            await self.sweep(call_id)
        except Exception as exc:
            if is_conflict(exc):  # rolled back: look at this call again on the next round
                log.info("sweep_conflict", call_id=str(call_id), error=type(exc).__name__)
                if call_id is not None:
                    self.wake(Wakeup(call_id))
            else:
                log.warning("sweep_failed", call_id=str(call_id), **exception_fields(exc))
        finally:
            self._slots.release()

    async def _sweep_all(self) -> int:
        """Claim and run everything due, batch after batch (bounded)."""
        self.metrics.reconciles.labels("scan").inc()
        total = 0
        for _ in range(50):
            found = await self.sweep(None)
            total += found
            if found < self.settings.batch_size:
                break
        return total

    async def sweep(self, call_id: UUID | None) -> int:
        """Run the due jobs, then send the due deliveries, of one call or of all."""
        jobs = await self.store.claim_jobs(call_id, self.settings.batch_size)
        self.inflight_jobs.update(j.id for j in jobs)
        try:
            rings, touched = await self.jobs.run(jobs)
        except asyncio.CancelledError:
            raise  # shutdown: these stay in flight so their leases are handed back
        except BaseException:
            self.inflight_jobs.difference_update(j.id for j in jobs)
            raise
        self.inflight_jobs.difference_update(j.id for j in jobs)
        self.sender.dispatch(rings)
        # Backpressure: never hold more sends in flight than the providers can take.
        room = 4 * self.settings.push_concurrency - len(self.sender.tasks)
        deliveries = (
            await self.store.claim_deliveries(call_id, min(room, self.settings.batch_size))
            if room > 0
            else []
        )
        self.sender.dispatch(deliveries)
        # The trigger created stop/missed pushes for the calls we just changed: send them now
        # (a global sweep's next round claims them anyway, in batches).
        for changed in touched - {call_id} if call_id else ():
            self.sender.dispatch(
                await self.store.claim_deliveries(changed, self.settings.batch_size)
            )
        return len(jobs) + len(deliveries)

    def _ended(self, ended: list[Ended]) -> None:
        for item in ended:
            self.metrics.calls_ended.labels(item.end_reason.value).inc()
            self.metrics.transitions.labels("ended", item.end_reason.value).inc()
            log.info(
                "call_transition",
                call_id=str(item.call_id),
                **{"from": item.from_status},
                to="ended",
                end_reason=item.end_reason.value,
                actor="system",
                lateness_ms=None if item.lateness is None else round(item.lateness * 1e3, 1),
            )

    async def _renew_leases(self) -> None:
        """Keep leases of work in flight alive; settle prune candidates whose time has come."""
        while True:
            await self.clock.sleep(self.settings.lease_seconds / 3)
            try:
                await self.store.renew(list(self.inflight_jobs), list(self.inflight_deliveries))
            except Exception as exc:
                log.warning("lease_renewal_failed", **exception_fields(exc))
            await self.sender.quarantine.settle(self.clock.monotonic())

    async def _drain(self) -> None:
        """Finish in-flight sweeps and sends within the grace period; give back the rest."""
        grace = self.settings.shutdown_grace_seconds
        started = self.clock.monotonic()
        self.sender.alarms.cancel()  # retry wake-ups: nobody is left to wake
        if self._tasks:
            pending = await timers.wait_all(self.clock, set(self._tasks), grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        left = max(grace - (self.clock.monotonic() - started), 0.0)
        if not await self.sender.idle(left):
            sends = set(self.sender.tasks)
            for task in sends:
                task.cancel()
            await asyncio.gather(*sends, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.store.release(list(self.inflight_jobs), list(self.inflight_deliveries))
        log.info(
            "worker_drained",
            released_jobs=len(self.inflight_jobs),
            released_deliveries=len(self.inflight_deliveries),
        )
