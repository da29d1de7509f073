"""The database and orchestrator.domain.transitions agree on every possible move.

For every (actor, from, to, reason) with actor in caller/callee/system/operator, from and to in
the three statuses and reason in None + the ten end reasons, the move is attempted against a
real call in `from` (each attempt in a transaction that is rolled back), and the database must
accept it exactly when `is_allowed` does. Time is the only other input: accepting needs the ring
deadline ahead (CA004 otherwise) and `missed` needs it passed (the calls_missed_after_deadline
check), so a `ringing` move is tried on a call whose deadline is ahead and on one whose deadline
has passed. Refusals carry their exact SQLSTATE; accepted moves are checked for their effects.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from orchestrator.domain.model import Actor, EndReason, Status
from orchestrator.domain.transitions import ALLOWED, is_allowed
from tests.support.db import create_user, insert_call
from tests.support.rls import OPERATOR, OWNER, Who, acting, commit_as, rolled_back, user

pytestmark = pytest.mark.postgres

REASONS: list[EndReason | None] = [None, *EndReason]
COMBOS = [
    (actor, from_status, to_status, reason)
    for actor in Actor
    for from_status in Status
    for to_status in Status
    for reason in REASONS
]
UPD = "update public.calls set status = $2, end_reason = $3 where id = $1"


@dataclass(frozen=True)
class BaseCall:
    id: uuid.UUID
    caller: uuid.UUID
    callee: uuid.UUID
    version: int
    due: bool  # ring deadline already passed


@pytest.fixture(scope="module")
async def conn(migrated_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(migrated_dsn)
    yield connection
    await connection.close()


@pytest.fixture(scope="module")
async def base_calls(conn: asyncpg.Connection) -> dict[str, BaseCall]:
    """One committed call per starting point, each reached by legal moves."""
    calls: dict[str, BaseCall] = {}

    async def pair() -> tuple[uuid.UUID, uuid.UUID]:
        return await create_user(conn), await create_user(conn)

    caller, callee = await pair()
    calls["ringing"] = BaseCall(await insert_call(conn, caller, callee), caller, callee, 1, False)
    caller, callee = await pair()
    seeded = await commit_as(
        conn,
        OWNER,
        "insert into public.calls (caller_id, callee_id, ring_deadline)"
        " values ($1, $2, now() - interval '1 second') returning id",
        caller,
        callee,
    )
    calls["ringing_due"] = BaseCall(seeded, caller, callee, 1, True)
    caller, callee = await pair()
    accepted = await insert_call(conn, caller, callee)
    await commit_as(conn, user(callee), UPD, accepted, "accepted", None)
    calls["accepted"] = BaseCall(accepted, caller, callee, 2, False)
    caller, callee = await pair()
    ended = await insert_call(conn, caller, callee)
    await commit_as(conn, user(caller), UPD, ended, "ended", "cancelled")
    calls["ended"] = BaseCall(ended, caller, callee, 2, False)
    return calls


def who_is(actor: Actor, call: BaseCall) -> Who:
    return {
        Actor.CALLER: user(call.caller),
        Actor.CALLEE: user(call.callee),
        Actor.SYSTEM: OWNER,
        Actor.OPERATOR: OPERATOR,
    }[actor]


def expected_sqlstate(
    actor: Actor, from_status: Status, to_status: Status, reason: EndReason | None, due: bool
) -> str | None:
    """None when the database must accept the move, else the SQLSTATE it must answer."""
    if from_status is Status.ENDED:
        return "CA003"
    if not is_allowed(actor, from_status, to_status, reason):
        return "CA001"
    if to_status is Status.ACCEPTED and due:
        return "CA004"
    if reason is EndReason.MISSED and not due:
        return "23514"  # calls_missed_after_deadline: ended_at >= ring_deadline
    return None


@dataclass
class Attempt:
    sqlstate: str | None
    tag: str = ""
    row: Any = None
    event: Any = None


async def try_move(
    conn: asyncpg.Connection, who: Who, call: BaseCall, to: Status, reason: EndReason | None
) -> Attempt:
    async with rolled_back(conn):
        try:
            async with acting(conn, who):
                tag = await conn.execute(UPD, call.id, to.value, reason and reason.value)
        except asyncpg.PostgresError as exc:
            return Attempt(exc.sqlstate)
        await conn.execute("reset role")
        row = await conn.fetchrow("select * from public.calls where id = $1", call.id)
        event = await conn.fetchrow(
            "select * from public.call_audit where call_id = $1 order by id desc limit 1", call.id
        )
        return Attempt(None, tag, row, event)


def _id(combo: tuple[Actor, Status, Status, EndReason | None]) -> str:
    actor, from_status, to_status, reason = combo
    return f"{actor}-{from_status}-{to_status}-{reason or 'none'}"


@pytest.mark.parametrize(
    ("actor", "from_status", "to_status", "reason"), COMBOS, ids=map(_id, COMBOS)
)
async def test_database_agrees_with_the_python_table(
    conn: asyncpg.Connection,
    base_calls: dict[str, BaseCall],
    actor: Actor,
    from_status: Status,
    to_status: Status,
    reason: EndReason | None,
) -> None:
    keys = ["ringing", "ringing_due"] if from_status is Status.RINGING else [from_status.value]
    for key in keys:
        call = base_calls[key]
        expected = expected_sqlstate(actor, from_status, to_status, reason, call.due)
        result = await try_move(conn, who_is(actor, call), call, to_status, reason)
        assert result.sqlstate == expected, f"{key}: expected {expected}, got {result.sqlstate}"
        assert (result.sqlstate is None) == (
            is_allowed(actor, from_status, to_status, reason) and expected not in ("CA004", "23514")
        )
        if result.sqlstate is not None:
            continue
        row, event = result.row, result.event
        assert result.tag == "UPDATE 1"
        assert (row["status"], row["end_reason"]) == (to_status.value, reason and reason.value)
        assert row["version"] == call.version + 1
        assert (row["accepted_at"] is not None) == (
            to_status is Status.ACCEPTED or from_status is Status.ACCEPTED
        )
        assert (row["ended_at"] is not None) == (to_status is Status.ENDED)
        client = actor in (Actor.CALLER, Actor.CALLEE)
        uid = call.caller if actor is Actor.CALLER else call.callee
        if to_status is Status.ENDED:
            assert row["ended_by"] == (uid if client else None)
        expected_event = "call_accepted" if to_status is Status.ACCEPTED else "call_ended"
        assert (
            event["event"],
            event["actor"],
            event["actor_id"],
            event["from_status"],
            event["to_status"],
            event["end_reason"],
        ) == (
            expected_event,
            actor.value,
            uid if client else None,
            from_status.value,
            to_status.value,
            reason and reason.value,
        )
        if actor is Actor.OPERATOR:
            assert json.loads(event["detail"])["operator"] == OPERATOR.operator


async def test_sql_transition_table_equals_the_python_table(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        "select a, f, t, r, orchestrator.transition_allowed(a, f, t, r) as allowed"
        " from unnest($1::text[], $2::text[], $3::text[], $4::text[]) as x (a, f, t, r)",
        [c[0].value for c in COMBOS],
        [c[1].value for c in COMBOS],
        [c[2].value for c in COMBOS],
        [c[3] and c[3].value for c in COMBOS],
    )
    assert len(rows) == len(COMBOS) == 4 * 3 * 3 * 11
    sql_allowed = {(r["a"], r["f"], r["t"], r["r"]) for r in rows if r["allowed"]}
    python_allowed = {
        (t.actor.value, t.from_status.value, t.to_status.value, t.end_reason and t.end_reason.value)
        for t in ALLOWED
    }
    assert sql_allowed == python_allowed
    for row in rows:
        actor, from_status, to_status = Actor(row["a"]), Status(row["f"]), Status(row["t"])
        reason = EndReason(row["r"]) if row["r"] else None
        assert row["allowed"] == is_allowed(actor, from_status, to_status, reason), tuple(row)
    # Not an actor of the table: clients outside a call, unknown roles.
    for stranger in ("client", "anon", "authenticated", ""):
        assert not await conn.fetchval(
            "select orchestrator.transition_allowed($1, 'ringing', 'ended', 'cancelled')", stranger
        )
