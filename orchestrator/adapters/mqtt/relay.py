"""The MQTT relay: every call_audit event to the users who may read it, and each call's state.

Every worker with `MQTT_URL` connects to the broker (will: `offline` on its status topic), but
only the one holding a session advisory lock on a dedicated database connection publishes. The
lock is taken only while connected to the broker and given up when that connection is lost, so
a worker that can still reach the broker takes over; another worker's relay also takes over
when the holder dies. The holder runs relay_pump: the retained state of every open call, then
the audit in id order up to a settled watermark (relay_sql), the cursor saved after every PUBACK.
A crash or an outage re-publishes from the saved cursor: at least once, in id order per call.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt
import asyncpg

from orchestrator.adapters.mqtt import relay_events as ev
from orchestrator.adapters.mqtt.publisher import MqttPublisher, parse_mqtt_url
from orchestrator.adapters.mqtt.relay_pump import (
    DB_ERRORS,
    Backoff,
    Pump,
    RelayOptions,
    close_quietly,
    pause,
)
from orchestrator.adapters.postgres import relay_sql as sql
from orchestrator.config import Settings
from orchestrator.logs import get_logger
from orchestrator.metrics import Metrics

__all__ = ["RelayOptions", "run_relay"]
log = get_logger("orchestrator.mqtt_relay")


async def run_relay(
    settings: Settings,
    pool: asyncpg.Pool,
    metrics: Metrics,
    stop: asyncio.Event,
    *,
    options: RelayOptions | None = None,
) -> None:
    """Run until `stop` is set. Never raises for broker or database outages: logs and retries."""
    if not settings.mqtt_url:
        return
    opts = options or RelayOptions()
    relay = asyncio.create_task(_Relay(settings, metrics, stop, opts).run())
    lag = asyncio.create_task(_report_lag(pool, metrics, stop, opts))
    try:
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({relay, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        # The page in flight finishes and its cursor is saved; a hung connect does not wait.
        await asyncio.wait({relay}, timeout=opts.stop_grace)
    finally:
        for task in (relay, lag):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _report_lag(
    pool: asyncpg.Pool, metrics: Metrics, stop: asyncio.Event, opts: RelayOptions
) -> None:
    while not stop.is_set():
        try:
            metrics.relay_lag.set(await sql.lag_seconds(pool))
        except Exception as exc:  # only a metric: never worth failing for
            log.debug("relay_lag_unavailable", error=type(exc).__name__)
        await pause(stop, opts.lag_interval)


class _Relay:
    def __init__(
        self, settings: Settings, metrics: Metrics, stop: asyncio.Event, opts: RelayOptions
    ) -> None:
        assert settings.mqtt_url
        self.target = parse_mqtt_url(settings.mqtt_url)
        self.metrics, self.stop, self.opts = metrics, stop, opts
        self.prefix = settings.mqtt_topic_prefix
        self.worker_id = settings.worker_id
        self.dsn = settings.require_database()

    async def run(self) -> None:
        backoff = Backoff(self.opts.backoff_min, self.opts.backoff_max)
        log.info("mqtt_relay_started", broker=self.target.describe(), worker_id=self.worker_id)
        attempts = 0
        while not self.stop.is_set():
            if attempts:
                self.metrics.reconnects.labels("mqtt").inc()
            attempts += 1
            try:
                async with MqttPublisher(
                    self.target,
                    client_id=f"orchestrator-{self.worker_id}",
                    status_topic=ev.status_topic(self.prefix, self.worker_id),
                    max_inflight=self.opts.max_inflight,
                    timeout=self.opts.publish_timeout,
                    keepalive=self.opts.keepalive,
                ) as publisher:
                    log.info("mqtt_connected", broker=self.target.describe())
                    backoff.reset()
                    await publisher.guard(self._serve(publisher))
                    break  # stopped
            except aiomqtt.MqttError as exc:
                log.warning("mqtt_unavailable", broker=self.target.describe(), error=str(exc))
            except Exception:  # a bug must not take the worker down: log it, start again
                log.exception("mqtt_relay_failed")
            await pause(self.stop, backoff.next())
        log.info("mqtt_relay_stopped", worker_id=self.worker_id)

    async def _serve(self, publisher: MqttPublisher) -> None:
        """While connected to the broker: hold the lock and publish; retry database outages."""
        backoff = Backoff(self.opts.backoff_min, self.opts.backoff_max)
        while not self.stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self.dsn, timeout=10, command_timeout=30, server_settings=self._session()
                )
                if await self._wait_for_lock(conn):
                    log.info("mqtt_relay_active", worker_id=self.worker_id)
                    backoff.reset()
                    await Pump(self.opts, self.stop, self.prefix, self.worker_id).run(
                        conn, publisher
                    )
            except DB_ERRORS as exc:
                log.warning(
                    "mqtt_relay_database_unavailable", error=type(exc).__name__, detail=str(exc)
                )
                await pause(self.stop, backoff.next())
            finally:
                if conn is not None:
                    await close_quietly(conn)  # ends the session: the lock goes with it

    def _session(self) -> dict[str, str]:
        """Named (operators see who holds the lock); TCP keepalives, so that the server ends
        a vanished relay's session, and with it the lock, in about 20 s rather than hours."""
        return {
            "application_name": f"orchestrator-relay:{self.worker_id}",
            "tcp_keepalives_idle": "10",
            "tcp_keepalives_interval": "5",
            "tcp_keepalives_count": "2",
        }

    async def _wait_for_lock(self, conn: asyncpg.Connection) -> bool:
        while not self.stop.is_set():
            if await sql.try_lock(conn):
                return True
            await pause(self.stop, self.opts.lock_retry)
        return False
