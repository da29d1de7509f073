"""`orchestrator worker`: wiring only. Builds the adapters, runs the engine until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import asyncpg
from aiohttp import web

from orchestrator.adapters.mqtt.relay import run_relay
from orchestrator.adapters.postgres.listen_source import ListenNotifySource
from orchestrator.adapters.postgres.migrate import apply_settings_from_env
from orchestrator.adapters.postgres.pool import create_pool
from orchestrator.adapters.postgres.pooler import refuse_transaction_pooler
from orchestrator.adapters.postgres.store import PostgresStore
from orchestrator.adapters.push.factory import build_providers
from orchestrator.config import Settings
from orchestrator.domain.brake import PruneBrake
from orchestrator.domain.model import Platform
from orchestrator.engine.engine import Engine
from orchestrator.engine.jobs import PickupHook
from orchestrator.engine.settings import EngineSettings
from orchestrator.health import start_health_server
from orchestrator.logs import get_logger
from orchestrator.metrics import Metrics
from orchestrator.ports import EventSource, PushProvider, SystemClock

log = get_logger("orchestrator.worker")
RING_TIMEOUT_WARNING_BELOW = 15


@dataclass
class WorkerHooks:
    """Test and demo seams: injected providers, a fault before pickups, the bound port."""

    providers: Mapping[Platform, PushProvider] | None = None
    pickup_hook: PickupHook | None = None
    metrics: Metrics | None = None
    source: EventSource | None = None  # an event source built by the caller (tests' timers)
    metrics_port: int | None = None  # filled in once the health server listens
    engine: Engine | None = None  # filled in once built (tests kill its tasks, read vitals)
    # Short health windows for tests (the contract's formulas otherwise).
    readiness_window: float | None = None
    liveness_window: float | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)  # set once subscribed


def engine_settings(settings: Settings) -> EngineSettings:
    return EngineSettings(
        worker_id=settings.worker_id,
        lease_seconds=settings.lease_seconds,
        reconcile_interval=settings.reconcile_interval,
        concurrency=max(2, settings.db_pool_size * 2),
        push_concurrency=settings.push_concurrency,
        push_timeout_seconds=settings.push_timeout_seconds,
        push_max_attempts=settings.push_max_attempts,
        push_retry_base_seconds=settings.push_retry_base_seconds,
        prune_quarantine_seconds=settings.prune_quarantine_seconds,
        job_max_attempts=settings.job_max_attempts,
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
        readiness_window=max(2 * settings.reconcile_interval, 10.0),
        liveness_window=max(30.0, 3 * settings.reconcile_interval),
    )


def build_source(settings: Settings, dsn: str, metrics: Metrics) -> EventSource:
    if settings.event_source == "supabase":
        from orchestrator.adapters.realtime.source import RealtimeEventSource

        return RealtimeEventSource(settings, metrics)
    # Slots move (and a dead worker's are taken over) well within WORKER_LEASE_SECONDS.
    return ListenNotifySource(
        dsn,
        metrics,
        rebalance_seconds=min(1.0, settings.lease_seconds / 3),
        wake_slots=settings.wake_slots,
    )


async def _apply_settings_when_reachable(
    settings: Settings, pool: asyncpg.Pool, stop: asyncio.Event
) -> None:
    """Refuse a transaction pooler, then overwrite the database's timers from the environment,
    retrying while the database is down."""
    delay = 0.2
    while not stop.is_set():
        try:
            await refuse_transaction_pooler(settings.require_database(), "worker")
            async with pool.acquire() as conn:
                await apply_settings_from_env(conn, settings)
            return
        except (OSError, ConnectionError) as exc:
            log.warning("database_unavailable", error=type(exc).__name__, retry_in=delay)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 10)


async def _announce_when_ready(source: EventSource, engine: Engine, started: asyncio.Event) -> None:
    """Subscribed and one sweep done: what /readyz waits for too."""
    while not (source.healthy and engine.vitals.sweep_ok_at is not None):
        await asyncio.sleep(0.01)
    started.set()


async def run_worker(
    settings: Settings,
    stop: asyncio.Event,
    *,
    serve: bool = False,
    hooks: WorkerHooks | None = None,
) -> None:
    hooks = hooks or WorkerHooks()
    dsn = settings.require_database()
    if settings.ring_timeout < RING_TIMEOUT_WARNING_BELOW:
        log.warning("ring_timeout_short", ring_timeout_seconds=settings.ring_timeout)
    metrics = hooks.metrics or Metrics()
    # The engine times every send itself, so the router's own timing wrapper stays off.
    providers = hooks.providers or build_providers(settings, metrics, timed=False)
    # min_size=0: the pool (and /healthz) come up even while the database is down.
    pool = await create_pool(
        dsn, size=settings.db_pool_size, name="orchestrator-worker", min_size=0
    )
    store = PostgresStore(
        pool,
        worker_id=settings.worker_id,
        lease_seconds=settings.lease_seconds,
        caller_name_key=settings.caller_name_key,
    )
    source = hooks.source or build_source(settings, dsn, metrics)
    brake = PruneBrake(settings.prune_brake_min, settings.prune_brake_ratio)
    timers = engine_settings(settings)
    if hooks.readiness_window is not None:
        timers = replace(timers, readiness_window=hooks.readiness_window)
    if hooks.liveness_window is not None:
        timers = replace(timers, liveness_window=hooks.liveness_window)
    engine = Engine(
        store,
        providers,
        timers,
        metrics,
        SystemClock(),
        brake=brake,
        pickup_hook=hooks.pickup_hook,
    )

    hooks.engine = engine

    async def ready() -> dict[str, bool]:
        return {
            "database": await store.ping(),
            "event_source": source.healthy,
            "sweeps": engine.vitals.sweeps_ok(),  # a reachable database is not enough
        }

    # Health first: a liveness probe must not fail just because the database is slow to come.
    runners = []
    health, hooks.metrics_port = await start_health_server(
        metrics, ready, settings.host, settings.metrics_port, live=engine.vitals.live
    )
    runners.append(health)
    try:
        await _apply_settings_when_reachable(settings, pool, stop)
        if serve:
            from orchestrator.tokenserver.app import build_app, start_site

            runners.append(await start_site(build_app(settings, pool, metrics), settings))
    except BaseException:
        await _close(runners, providers, pool)
        raise
    log.info(
        "worker_started",
        worker_id=settings.worker_id,
        event_source=source.name,
        providers={p.value: prov.name for p, prov in providers.items()},
    )
    announcer = asyncio.create_task(_announce_when_ready(source, engine, hooks.started))
    # The MQTT fan-out (returns at once without MQTT_URL); one relay is active across workers.
    relay = asyncio.create_task(run_relay(settings, pool, metrics, stop), name="mqtt-relay")
    relay.add_done_callback(lambda task: _relay_done(task, engine, stop))
    try:
        await engine.run(stop, source)
    finally:
        announcer.cancel()
        if not stop.is_set():
            relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay  # finishes the page in flight and publishes `offline` before the pool goes
        await _close(runners, providers, pool)
        log.info("worker_stopped", worker_id=settings.worker_id)


def _relay_done(task: asyncio.Task[None], engine: Engine, stop: asyncio.Event) -> None:
    """The relay returns at once without MQTT_URL (and at shutdown); only a crash is a death."""
    if not task.cancelled() and task.exception() is not None and not stop.is_set():
        engine.supervisor.watch(task)  # reports it and stops the engine like any helper


async def _close(
    runners: list[web.AppRunner], providers: Mapping[Platform, PushProvider], pool: asyncpg.Pool
) -> None:
    for runner in reversed(runners):
        await runner.cleanup()
    for provider in providers.values():
        await provider.close()
    await pool.close()
