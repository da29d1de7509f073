"""`orchestrator demo --mqtt`: follow `{prefix}/#` on the broker and print one line per message."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiomqtt

from orchestrator.adapters.mqtt.publisher import parse_mqtt_url
from orchestrator.config import Settings


def describe(topic: str, payload: bytes, prefix: str) -> str:
    """A readable line: the topic without the prefix, then the event, state and version."""
    where = topic.removeprefix(f"{prefix}/")
    try:
        body = json.loads(payload)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return f"  mqtt  {where:<52} {payload.decode(errors='replace')}"
    state = str(body.get("status")) + (f"/{body['end_reason']}" if body.get("end_reason") else "")
    return (
        f"  mqtt  {where:<52} {body.get('event', '?'):<15} {state:<20} "
        f"v{body.get('version')} #{body.get('event_id')}"
    )


async def follow_mqtt(settings: Settings, out: Callable[[str], None]) -> None:
    """Print every message under the prefix until cancelled; reconnects after broker outages."""
    if not settings.mqtt_url:
        return
    target = parse_mqtt_url(settings.mqtt_url)
    prefix = settings.mqtt_topic_prefix
    delay = 0.2
    while True:
        try:
            async with aiomqtt.Client(
                target.host,
                target.port,
                username=target.username,
                password=target.password,
                identifier=f"orchestrator-demo-{settings.worker_id}",
            ) as client:
                await client.subscribe(f"{prefix}/#", qos=1)
                out(f"  mqtt  following {prefix}/# on {target.describe()}")
                delay = 0.2
                async for message in client.messages:
                    out(describe(str(message.topic), bytes(message.payload or b""), prefix))
        except aiomqtt.MqttError as exc:
            out(f"  mqtt  broker unavailable ({exc}); retrying")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5)
