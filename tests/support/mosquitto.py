"""A private Mosquitto per test (own port, folder and config) and subscribers that record.

Never the machine's shared broker: tests stop and restart theirs, and retained messages stay
private. `stop()`/`start()` keep the port, so clients reconnect to the same address.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import re
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from tests.support.services import free_port, port_open, require_binary
from tests.support.wait import wait_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"

# Persistence on: the broker keeps subscribers' sessions and queued QoS 1 messages across a
# graceful restart, as a production broker would.
PLAIN_CONFIG = """
listener {port} 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
persistence true
persistence_location {folder}/
max_queued_messages 100000
log_dest file {folder}/mosquitto.log
"""


class Mosquitto:
    def __init__(self, folder: Path, config: str | None = None) -> None:
        self.binary = require_binary("mosquitto")
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        text = (config or PLAIN_CONFIG).format(port=self.port, folder=folder)
        # Started as root, Mosquitto drops to the `mosquitto` user, which cannot read the
        # test's folder: stay who we are.
        text += f"\nuser {getpass.getuser()}\n"
        self.config = folder / "mosquitto.conf"
        self.config.write_text(text)
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def with_deploy_config(
        cls, folder: Path, users: dict[str, str], acl: str | None = None
    ) -> Mosquitto:
        """deploy/mosquitto's config and ACL (or `acl`), with this test's port, folder and users."""
        require_binary("mosquitto_passwd")
        folder.mkdir(parents=True, exist_ok=True)
        passwd = folder / "passwd"
        passwd.touch()
        for user, password in users.items():
            subprocess.run(
                ["mosquitto_passwd", "-b", str(passwd), user, password],
                check=True,
                capture_output=True,
            )
        (folder / "acl").write_text(acl if acl is not None else (DEPLOY / "acl").read_text())
        text = (DEPLOY / "mosquitto.conf").read_text()
        text = text.replace("{", "{{").replace("}", "}}")
        rewrites = {
            "listener": "listener {port} 127.0.0.1",
            "password_file": "password_file {folder}/passwd",
            "acl_file": "acl_file {folder}/acl",
            "persistence_location": "persistence_location {folder}/",
            "log_dest": "log_dest file {folder}/mosquitto.log",
        }
        for key, line in rewrites.items():
            text, count = re.subn(rf"(?m)^{key}\b.*$", line, text)
            assert count == 1, f"deploy/mosquitto/mosquitto.conf has no single `{key}` line"
        return cls(folder, text)

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"mqtt://{auth}127.0.0.1:{self.port}"

    async def start(self) -> None:
        assert self.proc is None, "already running"
        log = (self.folder / "stdout.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

        async def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited: {self.log_text()}")
            return port_open("127.0.0.1", self.port, timeout=0.2)

        await wait_for(listening, timeout=10)

    async def stop(self) -> None:
        """Graceful (SIGTERM): the broker writes its persistence file on the way out."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(self.proc.wait, 10)
        self.proc = None

    def log_text(self) -> str:
        paths = [self.folder / "mosquitto.log", self.folder / "stdout.log"]
        return "\n".join(p.read_text(errors="replace") for p in paths if p.exists())


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool

    @property
    def body(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """Subscribes (QoS 1, persistent session) and records every message; reconnects."""

    port: int
    topics: list[str]
    username: str | None = None
    password: str | None = None
    persistent: bool = True
    received: list[Received] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    identifier: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:12]}")
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Subscriber:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.connected.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.port,
                    username=self.username,
                    password=self.password,
                    identifier=self.identifier,
                    clean_session=not self.persistent,
                ) as client:
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    self.connected.set()
                    async for message in client.messages:
                        payload = message.payload
                        assert isinstance(payload, bytes)
                        self.received.append(Received(str(message.topic), payload, message.retain))
            except aiomqtt.MqttError:
                self.connected.clear()
                await asyncio.sleep(0.05)  # reconnect pacing, not synchronisation

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.received if m.topic == topic]

    def event_ids(self, topic: str) -> list[int]:
        return [int(m.body["event_id"]) for m in self.on(topic)]
