"""The MQTT relay: every call_audit event to the users who may read it, and each call's state.

Every worker with `MQTT_URL` connects to the broker (will: `offline` on its status topic), but
only the one holding a session advisory lock on a dedicated database connection publishes. The
lock is taken only while connected to the broker and given up when that connection is lost, so
a worker that can still reach the broker takes over; another worker's relay also takes over
when the holder dies. The holder re-publishes the retained state of every open call, then pages
through the snapshot cursor (relay_sql): publish a page, wait for every PUBACK, then save the
cursor on the lock connection (a relay that lost its lock cannot move the cursor). A crash or
an outage re-publishes from the saved cursor: at least once, in order per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass

import aiomqtt
import asyncpg

from orchestrator.adapters import relay_events as ev
from orchestrator.adapters import relay_sql as sql
from orchestrator.adapters.mqtt_publisher import MqttPublisher, parse_mqtt_url
from orchestrator.config import Settings
from orchestrator.logs import get_logger
from orchestrator.metrics import Metrics

log = get_logger("orchestrator.mqtt_relay")
DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(frozen=True)
class RelayOptions:
    """Every interval is injectable (tests use short ones)."""

    poll_interval: float = 0.15  # idle wake-up: one indexed query
    page_size: int = 500
    max_inflight: int = 20  # Mosquitto's default receive maximum
    publish_timeout: float = 10.0
    keepalive: int = 30
    backoff_min: float = 0.2
    backoff_max: float = 10.0
    lock_retry: float = 1.0  # how often a standby relay tries the lock
    lag_interval: float = 1.0
    ended_state_ttl: int | None = 86_400  # retained state of an ended call expires (MQTT 5)
    stop_grace: float = 5.0  # after `stop`: time to finish the page in flight


class Backoff:
    def __init__(self, low: float, high: float) -> None:
        self.low, self.high, self.current = low, high, low

    def next(self) -> float:
        delay, self.current = self.current, min(self.current * 2, self.high)
        return delay * random.uniform(0.5, 1.5)  # jitter: replicas do not reconnect in step

    def reset(self) -> None:
        self.current = self.low


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


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
        await _pause(stop, opts.lag_interval)


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
            await _pause(self.stop, backoff.next())
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
                    await self._publish(conn, publisher)
            except DB_ERRORS as exc:
                log.warning(
                    "mqtt_relay_database_unavailable", error=type(exc).__name__, detail=str(exc)
                )
                await _pause(self.stop, backoff.next())
            finally:
                if conn is not None:
                    await _close(conn)  # ends the session: the lock goes with it

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
            await _pause(self.stop, self.opts.lock_retry)
        return False

    async def _publish(self, conn: asyncpg.Connection, publisher: MqttPublisher) -> None:
        opened = ev.open_state_messages(await sql.open_calls(conn), self.prefix)
        await publisher.publish_many(opened)
        log.info("mqtt_states_republished", calls=len(opened))
        cursor = await sql.load_cursor(conn)
        while not self.stop.is_set():
            page = await sql.fetch_page(conn, cursor, self.opts.page_size)
            following = cursor.after_page(page.window, page.last_id, page.full)
            if page.rows:
                messages = ev.messages_for(page.rows, self.prefix, self.opts.ended_state_ttl)
                await publisher.publish_many(messages)  # returns once every PUBACK is in
            if page.rows or cursor.window is not None:  # idle polls write nothing
                await sql.save_cursor(conn, following, self.worker_id)
            cursor = following  # an empty new window covers the same rows as before
            if not page.full:
                await _pause(self.stop, self.opts.poll_interval)


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 2)
    except asyncio.CancelledError:
        conn.terminate()
        raise
    except DB_ERRORS:
        conn.terminate()
