"""`orchestrator demo`: every end reason, on a local database, with a readable timeline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
import warnings
from typing import Any

import asyncpg

from orchestrator import demo_users, embedded_pg
from orchestrator.adapters.postgres import demo_sql as sql
from orchestrator.adapters.postgres.migrate import migrate
from orchestrator.config import Settings
from orchestrator.demo_scenarios import NAMES, SCENARIOS, WITHOUT_DEVICES, Clients
from orchestrator.domain.work import Job
from orchestrator.worker import WorkerHooks, run_worker

# Presence is shorter than the call limit, so the max_duration call (whose apps keep beating)
# runs into its limit while the connection_lost call (whose apps go silent) ends first.
DEMO_TIMERS = {"ring_timeout": 3, "max_call_seconds": 8, "presence_timeout": 5}


def _out(line: str = "") -> None:
    print(line, flush=True)  # the demo's own output is for people, not the log pipeline


async def _database(settings: Settings) -> tuple[str, embedded_pg.Stop | None]:
    if settings.database_url:
        return settings.database_url, None
    uri, stop = await asyncio.to_thread(embedded_pg.start)
    return uri, stop


async def _prepare(dsn: str) -> tuple[asyncpg.Connection, dict[str, uuid.UUID]]:
    conn = await asyncpg.connect(dsn)
    await demo_users.prepare(conn)  # a Supabase database keeps its own auth schema
    await migrate(conn)
    users: dict[str, uuid.UUID] = {}
    try:
        for index, name in enumerate(NAMES):
            users[name] = await demo_users.create_user(conn, name)
            if name in WITHOUT_DEVICES:
                continue
            platform = "ios" if index % 2 else "android"
            await conn.execute(
                sql.INSERT_DEVICE,
                users[name],
                platform,
                # Well-formed tokens (64+ hex for APNs, docs/security.md); pushes are dry-run.
                uuid.uuid4().hex * 2 if platform == "ios" else f"demo-{uuid.uuid4().hex}",
                uuid.uuid4().hex * 2 if platform == "ios" else None,
            )
    except BaseException:
        with contextlib.suppress(Exception):
            await demo_users.remove(conn, list(users.values()))
        await conn.close()
        raise
    return conn, users


class Timeline:
    """Prints every audit event as it is committed, with who did it and when."""

    def __init__(self, conn: asyncpg.Connection, users: dict[str, uuid.UUID]) -> None:
        self.conn = conn
        self.names = {v: k for k, v in users.items()}
        self.started = time.monotonic()
        self.last_id = 0

    async def follow(self) -> None:
        while True:
            await self.flush()
            await asyncio.sleep(0.05)

    async def flush(self) -> None:
        rows = await self.conn.fetch(
            sql.TIMELINE_SINCE,
            self.last_id,
            list(self.names),
        )
        for row in rows:
            self.last_id = row["id"]
            who = f"{self.names.get(row['caller_id'], '?')}→{self.names.get(row['callee_id'], '?')}"
            what = row["event"]
            if row["to_status"]:
                what += f" → {row['to_status']}" + (
                    f"/{row['end_reason']}" if row["end_reason"] else ""
                )
            detail = json.loads(row["detail"])
            extra = (
                detail.get("kind") or detail.get("reason") or detail.get("error")
                or detail.get("source") or ""
            )  # fmt: skip
            _out(
                f"  {time.monotonic() - self.started:6.2f}s  {who:<9} {row['actor']:<7} "
                f"{what:<32} {extra}"
            )


async def _summary(conn: asyncpg.Connection, results: list[tuple[str, str, uuid.UUID]]) -> bool:
    _out("\n  scenario                    expected      got           pushes (ring/stop/missed)")
    ok = True
    for name, expected, call_id in results:
        row = await conn.fetchrow(
            sql.CALL_SUMMARY,
            call_id,
        )
        got = row["end_reason"] or "-"
        ok &= got == expected
        mark = "ok " if got == expected else "MISMATCH"
        _out(f"  {name:<27} {expected:<13} {got:<13} {row['pushes'] or '-':<26} {mark}")
    return ok


async def _settle(conn: asyncpg.Connection, timeout: float = 10) -> None:
    """Wait until the worker has sent every push the calls caused."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and await conn.fetchval(sql.ANY_PENDING_DELIVERY):
        await asyncio.sleep(0.05)


def _quiet_logs(settings: Settings) -> None:
    """The demo prints its own timeline; the worker's JSON logs would bury it."""
    if os.environ.get("LOG_LEVEL") is None:
        logging.getLogger().setLevel(logging.ERROR)
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


async def run_demo(settings: Settings, *, mqtt: bool = False) -> int:
    _quiet_logs(settings)
    dsn, stop_embedded = await _database(settings)
    try:
        conn, users = await _prepare(dsn)
        clients = Clients(conn, users)
        worker_settings = settings.with_overrides(
            database_url=dsn,
            ring_timeout=DEMO_TIMERS["ring_timeout"],
            ring_timeout_set=True,
            max_call_seconds=DEMO_TIMERS["max_call_seconds"],
            max_call_seconds_set=True,
            # Heartbeat presence: the apps' call_heartbeat (see demo_scenarios).
            presence_source="heartbeat",
            presence_source_set=True,
            presence_timeout=DEMO_TIMERS["presence_timeout"],
            presence_timeout_set=True,
            push_dry_run=True,
            metrics_port=0,
            host="127.0.0.1",
            reconcile_interval=1.0,
            job_max_attempts=2,
            lease_seconds=2.0,
        )

        def inject_fault(job: Job) -> None:
            if job.call_id in clients.fail_calls:
                raise RuntimeError("injected fault (demo)")

        hooks = WorkerHooks(pickup_hook=inject_fault)
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(worker_settings, stop, hooks=hooks))
        await asyncio.wait_for(hooks.started.wait(), 30)
        _out(
            f"call orchestrator demo: {len(SCENARIOS)} calls, ring timeout "
            f"{DEMO_TIMERS['ring_timeout']} s, max duration {DEMO_TIMERS['max_call_seconds']} s,"
            f" presence timeout {DEMO_TIMERS['presence_timeout']} s (heartbeats),"
            " pushes dry-run\n"
        )
        timeline = Timeline(await asyncpg.connect(dsn), users)
        follower = asyncio.create_task(timeline.follow())
        extra = await _start_mqtt(worker_settings) if mqtt else None
        try:
            # Every simulated app has its own connection, as real phones would.
            sessions = [Clients(await asyncpg.connect(dsn), users) for _ in SCENARIOS]
            for session in sessions:
                session.fail_calls = clients.fail_calls
            call_ids = await asyncio.gather(
                *(s.script(session) for s, session in zip(SCENARIOS, sessions, strict=True))
            )
            await _settle(conn)
            await timeline.flush()
        finally:
            follower.cancel()
            if extra is not None:
                extra.cancel()
            stop.set()
            await asyncio.wait_for(worker, 20)
        results = [(s.name, s.expected, cid) for s, cid in zip(SCENARIOS, call_ids, strict=True)]
        ok = await _summary(conn, results)
        _out("\nall ten end reasons shown" if ok else "\nsome scenarios did not end as expected")
        if stop_embedded is None:  # someone's database: leave no demo users or calls behind
            removed = await demo_users.remove(conn, list(users.values()))
            _out(f"removed the {removed} demo users and their calls")
        return 0 if ok else 1
    finally:
        if stop_embedded is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(stop_embedded)


async def _start_mqtt(settings: Settings) -> asyncio.Task[Any] | None:
    if not settings.mqtt_url:
        _out("(--mqtt: set MQTT_URL to a running broker to see the stream)")
        return None
    from orchestrator.demo_mqtt import follow_mqtt

    return asyncio.create_task(follow_mqtt(settings, _out))
