"""The active relay's loop, on its locked connection: states of open calls, then the audit.

Each round takes a settled watermark (relay_sql), publishes the page up to it in id order,
waits for every PUBACK and only then saves the cursor, on the connection that holds the lock:
a relay that lost its lock cannot move the cursor. Busy: rounds follow each other at once;
idle: one round per `poll_interval`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass

import asyncpg

from orchestrator.adapters.mqtt import relay_events as ev
from orchestrator.adapters.mqtt.publisher import MqttPublisher
from orchestrator.adapters.postgres import relay_sql as sql
from orchestrator.logs import get_logger

log = get_logger("orchestrator.mqtt_relay")
DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(frozen=True)
class RelayOptions:
    """Every interval is injectable (tests use short ones)."""

    poll_interval: float = 0.15  # idle wake-up: two sub-millisecond queries
    page_size: int = 500
    max_inflight: int = 20  # Mosquitto's default receive maximum
    publish_timeout: float = 10.0
    keepalive: int = 30
    backoff_min: float = 0.2
    backoff_max: float = 10.0
    lock_retry: float = 1.0  # how often a standby relay tries the lock
    writer_poll: float = 0.002  # first wait for the transactions writing call_audit to end
    writer_warn: float = 10.0  # log the writers that hold the relay back this long
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


async def pause(stop: asyncio.Event, seconds: float) -> None:
    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that meets `stop`.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


class Pump:
    def __init__(
        self, opts: RelayOptions, stop: asyncio.Event, prefix: str, worker_id: str
    ) -> None:
        self.opts, self.stop, self.prefix, self.worker_id = opts, stop, prefix, worker_id

    async def run(self, conn: asyncpg.Connection, publisher: MqttPublisher) -> None:
        opened = ev.open_state_messages(await sql.open_calls(conn), self.prefix)
        await publisher.publish_many(opened)
        log.info("mqtt_states_republished", calls=len(opened))
        cursor = await sql.load_cursor(conn)
        upto = cursor.last_id
        while not self.stop.is_set():
            if upto <= cursor.last_id:  # the page before reached the watermark: take a new one
                upto = await self._settled_watermark(conn)
            page = await sql.fetch_page(conn, cursor, upto, self.opts.page_size)
            if page.late:
                log.warning("mqtt_relay_late_rows", ids=[r["id"] for r in page.late])
            if page.all_rows:
                messages = ev.messages_for(page.all_rows, self.prefix, self.opts.ended_state_ttl)
                await publisher.publish_many(messages)
                await sql.save_cursor(conn, page.following, self.worker_id)  # after every PUBACK
            cursor = page.following
            if not page.all_rows:  # idle: poll; busy: straight on to the next watermark
                await pause(self.stop, self.opts.poll_interval)

    async def _settled_watermark(self, conn: asyncpg.Connection) -> int:
        """The last id drawn, once every transaction then writing call_audit has ended."""
        upto, writers = await sql.watermark(conn)
        delay, waited = self.opts.writer_poll, 0.0
        while writers and not self.stop.is_set():
            await pause(self.stop, delay)
            waited += delay
            delay = min(delay * 2, self.opts.poll_interval)  # ms for commits, less for stragglers
            writers = await sql.still_writing(conn, writers)
            if writers and waited >= self.opts.writer_warn:  # e.g. a session left open
                log.warning("mqtt_relay_waiting_for_audit_writers", writers=writers)
                waited = 0.0
        return upto


async def close_quietly(conn: asyncpg.Connection) -> None:
    try:
        async with asyncio.timeout(2):
            await conn.close()
    except asyncio.CancelledError:
        conn.terminate()
        raise
    except DB_ERRORS:
        conn.terminate()
