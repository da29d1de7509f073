"""Everything that touches the `realtime` package: build a client, probe it, dispose of it.

realtime 2.34.1 has no public health API and no way to learn that it gave up, so the probes read
three private attributes (`_listen_task`, `_heartbeat_task`, `_ws_connection`). They are read
with getattr and a default: a future release that renames them degrades to "no opinion" (the
reconcile backstop keeps the worker correct) instead of crashing or rebuilding in a loop.
The integration tests pin the behaviour for the supported version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from realtime import (
    AsyncRealtimeChannel,
    AsyncRealtimeClient,
    RealtimePostgresChangesListenEvent,
    RealtimeSubscribeStates,
)

from orchestrator.adapters.realtime.events import SCHEMA, TABLE

StatusCallback = Callable[[RealtimeSubscribeStates, Exception | None], None]


@dataclass(frozen=True, slots=True)
class ClientOptions:
    url: str  # {SUPABASE_URL}/realtime/v1; the client derives the websocket URL
    key: str  # opaque service-role key: never logged
    topic: str
    hb_interval: int  # the library sleeps max(hb_interval, 15) between Phoenix heartbeats
    max_retries: int  # the library's own reconnect budget before it gives up for good
    initial_backoff: float
    timeout: int  # join/push timeout and websocket opening timeout, whole seconds


@dataclass(eq=False, slots=True)
class ClientHandle:
    generation: int
    client: AsyncRealtimeClient
    channel: AsyncRealtimeChannel


def build(
    options: ClientOptions,
    generation: int,
    on_change: Callable[[Any], None],
    on_system: Callable[[Any], None],
) -> ClientHandle:
    client = AsyncRealtimeClient(
        options.url,
        token=options.key,
        auto_reconnect=True,  # brief drops are the library's job; the watchdog handles the rest
        hb_interval=options.hb_interval,
        max_retries=options.max_retries,
        initial_backoff=options.initial_backoff,
        timeout=options.timeout,
    )
    channel = client.channel(options.topic)
    # Two bindings in one channel; no filter: filters match the new row only.
    for event in (
        RealtimePostgresChangesListenEvent.Insert,
        RealtimePostgresChangesListenEvent.Update,
    ):
        channel.on_postgres_changes(event, on_change, table=TABLE, schema=SCHEMA)
    channel.on_system(on_system)
    return ClientHandle(generation, client, channel)


def connection(client: AsyncRealtimeClient) -> Any:
    """The live websocket (websockets' ClientConnection), or None while disconnected."""
    return getattr(client, "_ws_connection", None)


def _ended(task: object) -> bool:
    return isinstance(task, asyncio.Task) and task.done()


def reader_ended(client: AsyncRealtimeClient) -> bool:
    """The reader task finished: it died (exception in a handler, retries exhausted)."""
    return _ended(getattr(client, "_listen_task", None))


def heartbeat_ended(client: AsyncRealtimeClient) -> bool:
    """Connected but no longer heartbeating: the server would drop us within a minute."""
    return client.is_connected and _ended(getattr(client, "_heartbeat_task", None))


def bindings_have_ids(channel: AsyncRealtimeChannel) -> bool:
    """After a join reply: without a non-zero id per binding no event is ever delivered."""
    return all(binding.id for binding in channel.postgres_changes_callbacks)


def task_failure(client: AsyncRealtimeClient) -> str | None:
    """The exception type that ended the reader, for the log (never its text: it may echo)."""
    task = getattr(client, "_listen_task", None)
    if isinstance(task, asyncio.Task) and task.done() and not task.cancelled():
        error = task.exception()
        return type(error).__name__ if error is not None else None
    return None


def _library_tasks(handle: ClientHandle) -> set[asyncio.Task[Any]]:
    client, channel = handle.client, handle.channel
    pushes = [channel.join_push, *channel.messages_waiting_for_ack.values()]
    candidates = [
        getattr(client, "_listen_task", None),
        getattr(client, "_heartbeat_task", None),
        getattr(channel.rejoin_timer, "timer", None),
        *(getattr(push, "timeout_task", None) for push in pushes),
        *getattr(channel, "_background_tasks", ()),
    ]
    return {task for task in candidates if isinstance(task, asyncio.Task)}


async def dispose(handle: ClientHandle, close_timeout: float) -> None:
    """Tear a client down completely: no task, timer or socket of it survives.

    `close()` alone leaves the channel's rejoin timer and push timeouts running, and a reader
    still inside its reconnect loop would open a new socket for a client we are abandoning.
    """
    client, channel = handle.client, handle.channel
    client.auto_reconnect = False
    tasks = _library_tasks(handle)  # collected first: resetting the timers forgets them
    channel.rejoin_timer.reset()
    channel.join_push.destroy()
    for push in channel.messages_waiting_for_ack.values():
        push.destroy()
    channel.messages_waiting_for_ack.clear()
    ws = connection(client)
    try:
        # Polite close first; a half-open peer never answers, hence the bound.
        async with asyncio.timeout(close_timeout):
            await client.close()
    except Exception:  # noqa: S110 - a failing close changes nothing: the socket is aborted below
        pass
    finally:
        transport = getattr(ws, "transport", None)
        if transport is not None:
            transport.abort()
        tasks |= _library_tasks(handle)
        current = asyncio.current_task()
        if current is not None:
            tasks.discard(current)
        for task in tasks:
            task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=close_timeout)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it at garbage collection
