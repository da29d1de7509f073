"""Operator tools: `call show|end|redrive` and `prune`. Every action is audited."""

from __future__ import annotations

import argparse
import getpass
import json
import os
from typing import Any
from uuid import UUID

import asyncpg

from orchestrator.adapters.postgres import operator_sql as sql
from orchestrator.config import ConfigError, Settings
from orchestrator.domain.model import EndReason, Status
from orchestrator.domain.transitions import operator_reasons

PRUNE_BATCH = 1000


def operator_name() -> str:
    return os.environ.get("ORCHESTRATOR_OPERATOR") or getpass.getuser()


def _uuid(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise ConfigError(f"{raw!r} is not a call id (a UUID)") from None


async def _audit(conn: asyncpg.Connection, call_id: UUID, detail: dict[str, Any]) -> None:
    await conn.execute(
        sql.AUDIT_ACTION,
        call_id,
        json.dumps({"operator": operator_name(), **detail}),
    )


async def show(conn: asyncpg.Connection, call_id: UUID) -> int:
    call = await conn.fetchrow(sql.CALL, call_id)
    if call is None:
        print(f"call {call_id} not found")
        return 1
    print(
        f"call {call_id}: {call['status']}"
        + (f"/{call['end_reason']}" if call["end_reason"] else "")
        + f"  caller={call['caller_id']} callee={call['callee_id']} version={call['version']}"
    )
    print(f"  created {call['created_at']}  ring deadline {call['ring_deadline']}")
    print("timeline:")
    for row in await conn.fetch(
        sql.TIMELINE,
        call_id,
    ):
        move = f"{row['from_status'] or '-'} -> {row['to_status']}" if row["to_status"] else ""
        print(
            f"  {row['occurred_at']}  {row['actor']:<8} {row['event']:<15} {move} "
            f"{row['end_reason'] or ''} {row['detail']}"
        )
    print("deliveries:")
    for row in await conn.fetch(
        sql.DELIVERIES,
        call_id,
    ):
        print(
            f"  #{row['id']} {row['kind']:<6} {row['provider']:<4} {row['status']:<7} "
            f"attempts={row['attempts']} error={row['last_error'] or '-'} "
            f"sent={row['sent_at'] or '-'} acked={row['acked_at'] or '-'}"
        )
    return 0


async def end(conn: asyncpg.Connection, call_id: UUID, reason: str) -> int:
    async with conn.transaction():
        row = await conn.fetchrow(
            sql.LOCK_CALL,
            call_id,
        )
        if row is None:
            print(f"call {call_id} not found")
            return 1
        status = row["status"]
        allowed = operator_reasons(Status(status), deadline_passed=row["deadline_passed"])
        if reason not in allowed:
            print(f"an operator may end a {status} call with: {', '.join(allowed) or 'nothing'}")
            return 2
        await conn.execute(sql.SET_OPERATOR, operator_name())
        await conn.execute(
            sql.END_CALL,
            call_id,
            EndReason(reason).value,
        )
        await _audit(conn, call_id, {"action": "end", "end_reason": reason})
    # After the commit: wake the workers so stop/missed pushes go out now (and count it).
    await conn.execute(sql.NOTIFY_CALL, f"{call_id} {reason}")
    print(f"call {call_id} ended: {reason}")
    return 0


async def redrive(conn: asyncpg.Connection, call_id: UUID) -> int:
    if not await conn.fetchval(sql.CALL_EXISTS, call_id):
        print(f"call {call_id} not found")
        return 1
    async with conn.transaction():
        rows = await conn.fetch(
            sql.REDRIVE,
            call_id,
        )
        ids = [r["id"] for r in rows]
        await _audit(conn, call_id, {"action": "redrive", "deliveries": ids})
    await conn.execute(sql.NOTIFY_CALL, str(call_id))
    print(f"call {call_id}: {len(ids)} deliver{'y' if len(ids) == 1 else 'ies'} redriven")
    return 0


async def run_call_command(args: argparse.Namespace, settings: Settings) -> int:
    call_id = _uuid(args.id)
    conn = await asyncpg.connect(settings.require_database())
    try:
        if args.call_command == "show":
            return await show(conn, call_id)
        if args.call_command == "end":
            try:
                return await end(conn, call_id, args.reason)
            except asyncpg.PostgresError as exc:  # the database refused: say why, no traceback
                print(f"refused by the database ({exc.sqlstate}): {exc}")
                return 2
        return await redrive(conn, call_id)
    finally:
        await conn.close()


async def prune_older_than(conn: asyncpg.Connection, days: int) -> int:
    """Delete ended calls older than `days` with their audit and deliveries, in batches."""
    total = 0
    while True:
        async with conn.transaction():
            await conn.execute(sql.PRUNE_ON)
            ids = [
                r["id"]
                for r in await conn.fetch(
                    sql.ENDED_CALLS_OLDER_THAN,
                    days,
                    PRUNE_BATCH,
                )
            ]
            if not ids:
                return total
            await conn.execute(sql.DELETE_AUDIT_OF, ids)
            await conn.execute(sql.DELETE_DELIVERIES_OF, ids)
            await conn.execute(sql.DELETE_CALLS, ids)
            total += len(ids)


async def prune(settings: Settings, days: int) -> int:
    if days < 0:
        raise ConfigError("--older-than must be 0 or more days")
    conn = await asyncpg.connect(settings.require_database())
    try:
        total = await prune_older_than(conn, days)
    finally:
        await conn.close()
    print(f"pruned {total} ended call(s) older than {days} day(s)")
    return 0
