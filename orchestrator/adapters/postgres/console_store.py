"""The console's database access: operator sessions, a call's record, the "now" figures, and
the two operator actions under the same rules as `orchestrator call end|redrive`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from orchestrator.adapters.postgres import console_sql as q
from orchestrator.domain.model import EndReason, Status
from orchestrator.domain.transitions import operator_reasons

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Operator:
    user_id: UUID
    email: str | None


@dataclass(frozen=True, slots=True)
class CallRecord:
    call: Row
    audit: list[Row]
    deliveries: list[Row]


@dataclass(frozen=True, slots=True)
class ActionResult:
    ok: bool
    message: str


def _rows(records: list[asyncpg.Record]) -> list[Row]:
    return [dict(r) for r in records]


async def create_session(
    pool: asyncpg.Pool,
    token_hash: bytes,
    *,
    check_session: bool,
    user_id: UUID,
    auth_session_id: UUID | None,
    expires_at: float,
) -> float | None:
    """Seconds the new session lives, or None when the Supabase session is gone."""
    lifetime = await pool.fetchval(
        q.CREATE_SESSION, token_hash, check_session, user_id, auth_session_id, expires_at
    )
    return None if lifetime is None else float(lifetime)


async def lookup_session(
    pool: asyncpg.Pool, token_hash: bytes, *, check_session: bool
) -> Operator | None:
    row = await pool.fetchrow(q.LOOKUP_SESSION, token_hash, check_session)
    return None if row is None else Operator(row["user_id"], row["email"])


async def delete_session(pool: asyncpg.Pool, token_hash: bytes) -> None:
    await pool.execute(q.DELETE_SESSION, token_hash)


async def load_call(pool: asyncpg.Pool, call_id: UUID) -> CallRecord | None:
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        call = await conn.fetchrow(q.CALL, call_id)
        if call is None:
            return None
        audit = _rows(await conn.fetch(q.AUDIT, call_id))
        for row in audit:  # asyncpg hands jsonb over as text
            row["detail"] = json.loads(row["detail"]) if row["detail"] else {}
        deliveries = _rows(await conn.fetch(q.DELIVERIES, call_id))
    return CallRecord(dict(call), audit, deliveries)


async def user_calls(
    pool: asyncpg.Pool, user_id: UUID, limit: int = 50
) -> tuple[Row, list[Row]] | None:
    """The user and their newest calls; None for an unknown user (a deleted user's calls
    keep no link to them: `on delete set null`)."""
    user = await pool.fetchrow(q.USER, user_id)
    if user is None:
        return None
    return dict(user), _rows(await pool.fetch(q.USER_CALLS, user_id, limit))


async def find_user(pool: asyncpg.Pool, email: str) -> UUID | None:
    found: UUID | None = await pool.fetchval(q.USER_BY_EMAIL, email)
    return found


async def now_snapshot(pool: asyncpg.Pool, live_limit: int = 50) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        return {
            "live": _rows(await conn.fetch(q.LIVE_CALLS, live_limit)),
            "time_to_ring": _rows(await conn.fetch(q.TIME_TO_RING)),
            "outcomes": _rows(await conn.fetch(q.PUSH_OUTCOMES)),
            "brake": _rows(await conn.fetch(q.BRAKE_WINDOW)),
            "queue": dict(await conn.fetchrow(q.QUEUE) or {}),
            "db_now": await conn.fetchval("select now()"),
        }


async def end_call(pool: asyncpg.Pool, call_id: UUID, reason: str, operator: UUID) -> ActionResult:
    """`orchestrator call end` with the console operator's id in both audit rows."""
    try:
        return await _end_call(pool, call_id, reason, operator)
    except asyncpg.PostgresError as exc:  # the database refused (e.g. the state machine): say so
        return ActionResult(False, f"Refused by the database ({exc.sqlstate}): {exc}")


async def _end_call(pool: asyncpg.Pool, call_id: UUID, reason: str, operator: UUID) -> ActionResult:
    async with pool.acquire() as conn:
        async with conn.transaction():
            row = await conn.fetchrow(
                "select status, ring_deadline <= now() as deadline_passed from public.calls"
                " where id = $1 for update",
                call_id,
            )
            if row is None:
                return ActionResult(False, "No such call.")
            status = row["status"]
            allowed = operator_reasons(Status(status), deadline_passed=row["deadline_passed"])
            if reason not in allowed:
                return ActionResult(
                    False,
                    f"An operator may end a {status} call with: {', '.join(allowed) or 'nothing'}.",
                )
            await conn.execute(
                "select set_config('orchestrator.operator', $1, true)", str(operator)
            )
            await conn.execute(
                "update public.calls set status = 'ended', end_reason = $2 where id = $1",
                call_id,
                EndReason(reason).value,
            )
            detail = {"operator": str(operator), "via": "console", "action": "end"}
            await conn.execute(
                q.OPERATOR_AUDIT, call_id, operator, json.dumps(detail | {"end_reason": reason})
            )
        # After the commit, as the CLI does: wake the workers so stop/missed pushes go out now.
        await conn.execute("select pg_notify('orchestrator_calls', $1)", f"{call_id} {reason}")
    return ActionResult(True, f"Call ended: {reason}.")


async def redrive_call(pool: asyncpg.Pool, call_id: UUID, operator: UUID) -> ActionResult:
    async with pool.acquire() as conn:
        async with conn.transaction():
            if (
                await conn.fetchval("select 1 from public.calls where id = $1 for update", call_id)
                is None
            ):
                return ActionResult(False, "No such call.")
            ids = [r["id"] for r in await conn.fetch(q.REDRIVE, call_id)]
            detail = {"operator": str(operator), "via": "console", "action": "redrive"}
            await conn.execute(
                q.OPERATOR_AUDIT, call_id, operator, json.dumps(detail | {"deliveries": ids})
            )
        await conn.execute("select pg_notify('orchestrator_calls', $1)", str(call_id))
    return ActionResult(True, f"{len(ids)} deliver{'y' if len(ids) == 1 else 'ies'} redriven.")
