"""One MQTT 5 connection (aiomqtt) for the relay: will, online status, bounded QoS 1 publishes.

`publish_many` keeps at most `max_inflight` publishes waiting for their PUBACK and puts them on
the wire in list order (MQTT keeps that order per topic). A PUBACK with a failure reason code
(e.g. not authorized) counts as not published: aiomqtt drops the reason code, so `_Client`
records it. The connection's loss is noticed at once (`guard`), not after a publish timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from orchestrator.adapters.mqtt.relay_events import Outgoing

T = TypeVar("T")
ONLINE, OFFLINE = b"online", b"offline"


@dataclass(frozen=True)
class BrokerTarget:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        """For logs: never the password."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_mqtt_url(url: str) -> BrokerTarget:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError("MQTT_URL must be mqtt://[user:pass@]host[:port] or mqtts://…")
    tls = parts.scheme == "mqtts"
    return BrokerTarget(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class PublishRefused(aiomqtt.MqttError):
    """The broker acknowledged a publish with a failure reason code."""


class _Client(aiomqtt.Client):
    refusals: int = 0
    last_refusal: str = ""

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason_code: Any, props: Any
    ) -> None:
        if getattr(reason_code, "is_failure", False):
            self.refusals += 1
            self.last_refusal = str(reason_code)
        super()._on_publish(client, userdata, mid, reason_code, props)


class MqttPublisher:
    """`async with MqttPublisher(...) as pub`: connected, `online` published (retained)."""

    def __init__(
        self,
        target: BrokerTarget,
        *,
        client_id: str,
        status_topic: str,
        max_inflight: int = 20,
        timeout: float = 10.0,
        keepalive: int = 30,
    ) -> None:
        self.target = target
        self.status_topic = status_topic
        self.max_inflight = max_inflight
        self.client = _Client(
            target.host,
            target.port,
            username=target.username,
            password=target.password,
            identifier=client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=aiomqtt.Will(status_topic, OFFLINE, qos=1, retain=True),
            timeout=timeout,
            keepalive=keepalive,
            max_inflight_messages=max_inflight,
            tls_context=ssl.create_default_context() if target.tls else None,
        )
        self.client.pending_calls_threshold = max_inflight + 10  # else a warning per publish
        self._watch: asyncio.Task[None] | None = None

    async def __aenter__(self) -> MqttPublisher:
        await self.client.__aenter__()
        self._watch = asyncio.create_task(self._watch_connection())
        try:
            await self.publish(self.status_topic, ONLINE, qos=1, retain=True)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._watch is not None and not self._watch.done():
            # A clean DISCONNECT suppresses the will: say `offline` ourselves first.
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(2):
                    await self.publish(self.status_topic, OFFLINE, qos=1, retain=True)
            self._watch.cancel()
        elif self._watch is not None and not self._watch.cancelled():
            self._watch.exception()  # the loss was reported through guard(); mark it retrieved
        with contextlib.suppress(aiomqtt.MqttError, OSError):
            await self.client.__aexit__(exc_type, exc, tb)

    async def _watch_connection(self) -> None:
        """Ends (with MqttError) when the connection is lost; nothing is subscribed."""
        async for _ in self.client.messages:
            pass

    async def guard(self, work: Awaitable[T]) -> T:
        """Run `work` until it returns; if the connection is lost first, cancel it and raise."""
        assert self._watch is not None
        task = asyncio.ensure_future(work)
        try:
            await asyncio.wait({task, self._watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if task.cancelled():
            raise aiomqtt.MqttError("connection to the broker lost")
        return task.result()

    async def publish(
        self, topic: str, payload: bytes, *, qos: int, retain: bool, expiry: int | None = None
    ) -> None:
        """The `Publisher` port: returns once the broker acknowledged (QoS 1 PUBACK)."""
        before = self.client.refusals
        await self.client.publish(
            topic, payload, qos=qos, retain=retain, properties=_expiry(expiry)
        )
        if self.client.refusals != before:
            raise PublishRefused(f"broker refused a publish: {self.client.last_refusal}")

    async def publish_many(self, messages: Sequence[Outgoing]) -> None:
        """Publish all (QoS 1) with at most `max_inflight` unacknowledged; raise if any fails."""
        if not messages:
            return
        slots = asyncio.Semaphore(self.max_inflight)
        before = self.client.refusals

        async def one(message: Outgoing) -> None:
            try:
                await self.client.publish(
                    message.topic,
                    message.payload,
                    qos=1,
                    retain=message.retain,
                    properties=_expiry(message.expiry),
                )
            finally:
                slots.release()

        try:
            async with asyncio.TaskGroup() as group:
                for message in messages:
                    await slots.acquire()  # in order: each task's first step is paho's publish()
                    group.create_task(one(message))
        except BaseExceptionGroup as failed:
            first = failed.exceptions[0]
            if isinstance(first, aiomqtt.MqttError):
                raise first from None
            raise
        if self.client.refusals != before:
            raise PublishRefused(f"broker refused a publish: {self.client.last_refusal}")


def _expiry(seconds: int | None) -> Properties | None:
    if not seconds:
        return None
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.MessageExpiryInterval = seconds
    return properties
