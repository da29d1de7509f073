"""`orchestrator` command line: thin wiring over the adapters and the engine."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

from orchestrator import __version__, logs
from orchestrator.config import ConfigError, Settings
from orchestrator.engine.supervision import BackgroundTaskDied

Command = Callable[[argparse.Namespace, Settings], Awaitable[int]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrator", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    migrate = sub.add_parser("migrate", help="apply supabase/migrations to DATABASE_URL")
    migrate.add_argument(
        "--emulate-supabase",
        action="store_true",
        help="first create Supabase's roles, auth schema and publication",
    )
    worker = sub.add_parser("worker", help="run the call worker until SIGTERM")
    worker.add_argument("--serve", action="store_true", help="also run the token server")
    sub.add_parser("serve", help="run the Agora token server")
    demo = sub.add_parser("demo", help="walk through every end reason on a local database")
    demo.add_argument("--mqtt", action="store_true", help="also show the MQTT stream")
    # Dev only: bench/ is not part of the installed package (orchestrator/bench_entry.py).
    sub.add_parser("bench", help="dev only, needs a source checkout: run bench/ (BENCH_QUICK=1)")
    call = sub.add_parser("call", help="operator tools for one call")
    call_sub = call.add_subparsers(dest="call_command", required=True)
    show = call_sub.add_parser("show", help="timeline of a call: audit and deliveries")
    show.add_argument("id")
    end = call_sub.add_parser("end", help="end a call as the operator")
    end.add_argument("id")
    end.add_argument("--reason", required=True)
    redrive = call_sub.add_parser("redrive", help="retry failed deliveries within deadline")
    redrive.add_argument("id")
    prune = sub.add_parser("prune", help="delete ended calls older than DAYS with their audit")
    prune.add_argument("--older-than", type=int, required=True, metavar="DAYS")
    return parser


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # non-POSIX
            loop.add_signal_handler(sig, stop.set)
    return stop


async def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    import asyncpg

    from orchestrator.adapters.postgres.migrate import (
        apply_settings_from_env,
        emulate_supabase,
        migrate,
    )

    conn = await asyncpg.connect(settings.require_database())
    try:
        if args.emulate_supabase:
            await emulate_supabase(conn)
        applied = await migrate(conn)
        await apply_settings_from_env(conn, settings)
    finally:
        await conn.close()
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    return 0


async def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.worker import run_worker

    await run_worker(settings, stop_on_signals(), serve=args.serve)
    return 0


async def _serve(_: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.tokenserver.app import serve

    await serve(settings)
    return 0


async def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.demo import run_demo

    code: int = await run_demo(settings, mqtt=args.mqtt)
    return code


async def _bench(_: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.bench_entry import run_bench

    code: int = await run_bench(settings)
    return code


async def _call(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.operator_tools import run_call_command

    return await run_call_command(args, settings)


async def _prune(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.operator_tools import prune

    return await prune(settings, args.older_than)


COMMANDS: dict[str, Command] = {
    "migrate": _migrate,
    "worker": _worker,
    "serve": _serve,
    "demo": _demo,
    "bench": _bench,
    "call": _call,
    "prune": _prune,
}


# Commands that need a database session of their own; `serve` is stateless per request.
SESSION_COMMANDS = {"migrate", "demo", "bench", "call", "prune"}


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command in SESSION_COMMANDS and settings.database_url:
        from orchestrator.adapters.postgres.pooler import refuse_transaction_pooler

        # The worker probes by itself once the database answers (it may start before it).
        await refuse_transaction_pooler(settings.database_url, args.command)
    return await COMMANDS[args.command](args, settings)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"orchestrator: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, settings.log_level)
    try:
        import uvloop

        runner: Callable[[Awaitable[int]], int] = uvloop.run  # type: ignore[assignment]
    except ImportError:  # pragma: no cover
        runner = asyncio.run  # type: ignore[assignment]
    try:
        return runner(_run(args, settings))
    except ConfigError as exc:
        print(f"orchestrator: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        return 130
    except BackgroundTaskDied as exc:  # logged (background_task_died) and drained already
        print(f"orchestrator: {exc}; exiting so that the supervisor restarts it", file=sys.stderr)
        return 1
