"""Random sequences of writes by every kind of actor keep a call legal and agree with the model.

Hypothesis drives one call (its ring deadline ahead or already passed) through a random list of
steps: the caller, the callee, the system (owner connection), an operator and an unrelated
signed-in user each try status/reason writes, or try to write a column the database owns. Every
step is its own transaction, committed when the database accepts it. A pure Python model built on
`orchestrator.domain.transitions.is_allowed` predicts each outcome; after every step the row must
be in a consistent state equal to the model, `version` must count the accepted changes, an ended
row must never change again, and the audit must hold exactly one status event per change.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.domain.model import Actor, EndReason, Status
from orchestrator.domain.transitions import ALLOWED, is_allowed
from tests.support.db import create_user, insert_call
from tests.support.rls import OPERATOR, OWNER, Who, acting, commit_as, user

pytestmark = pytest.mark.postgres

UNRELATED = "unrelated"
ACTORS = [*(a.value for a in Actor), UNRELATED]
REASONS: list[EndReason | None] = [None, *EndReason]
UPD = "update public.calls set status = $2, end_reason = $3 where id = $1"
# Columns nobody may write (clients hold no grant; the trigger refuses the system).
TAMPER = {
    "version": "version + 1",
    "video": "not video",
    "callee_id": "caller_id",
    "ended_by": "caller_id",
    "created_at": "created_at - interval '1 second'",
    "ring_deadline": "ring_deadline + interval '1 minute'",
    "accepted_at": "now()",
}


@dataclass(frozen=True)
class Move:
    actor: str
    to: Status
    reason: EndReason | None


@dataclass(frozen=True)
class Tamper:
    actor: str
    column: str


Step = Move | Tamper

random_moves = st.builds(
    Move, st.sampled_from(ACTORS), st.sampled_from(list(Status)), st.sampled_from(REASONS)
)
# Moves the table allows (for some starting status), so that sequences get somewhere.
table_moves = st.sampled_from(
    sorted(
        (Move(t.actor.value, t.to_status, t.end_reason) for t in ALLOWED),
        key=lambda m: (m.actor, m.to, m.reason or ""),
    )
)
tampers = st.builds(Tamper, st.sampled_from(ACTORS), st.sampled_from(sorted(TAMPER)))
steps = st.lists(st.one_of(table_moves, random_moves, tampers), min_size=1, max_size=10)


@dataclass
class Model:
    """What the call must look like, predicted from the Python transition table alone."""

    caller: uuid.UUID
    callee: uuid.UUID
    due: bool
    status: Status = Status.RINGING
    reason: EndReason | None = None
    version: int = 1
    accepted: bool = False
    ended_by: uuid.UUID | None = None
    events: list[tuple[Any, ...]] = field(default_factory=list)

    def expect(self, step: Step) -> str | int:
        """The SQLSTATE the database must answer, or the number of rows it must change."""
        if isinstance(step, Tamper):
            if step.actor in (Actor.CALLER, Actor.CALLEE, UNRELATED):
                return "42501"  # no UPDATE grant on the column, whoever the user is
            return "CA003" if self.status is Status.ENDED else "CA002"
        if step.actor == UNRELATED:
            return 0  # RLS: the row is not theirs, nothing to update
        if self.status is Status.ENDED:
            return "CA003"
        if not is_allowed(Actor(step.actor), self.status, step.to, step.reason):
            return "CA001"
        if step.to is Status.ACCEPTED and self.due:
            return "CA004"
        if step.reason is EndReason.MISSED and not self.due:
            return "23514"
        return 1

    def apply(self, step: Move) -> None:
        event = "call_accepted" if step.to is Status.ACCEPTED else "call_ended"
        self.events.append((event, self.status.value, step.to.value, _v(step.reason), step.actor))
        self.status, self.reason, self.version = step.to, step.reason, self.version + 1
        self.accepted = self.accepted or step.to is Status.ACCEPTED
        if step.to is Status.ENDED:
            clients = {Actor.CALLER.value: self.caller, Actor.CALLEE.value: self.callee}
            self.ended_by = clients.get(step.actor)


def _v(reason: EndReason | None) -> str | None:
    return reason.value if reason else None


@pytest.fixture(scope="module")
async def conn(migrated_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(migrated_dsn)
    yield connection
    await connection.close()


async def run_step(conn: asyncpg.Connection, who: Who, call_id: uuid.UUID, step: Step) -> str | int:
    """Perform one step as `who` in its own transaction; the SQLSTATE or the rows changed."""
    if isinstance(step, Move):
        sql, args = UPD, (call_id, step.to.value, _v(step.reason))
    else:
        sql, args = (
            f"update public.calls set {step.column} = {TAMPER[step.column]} where id = $1",
            (call_id,),
        )
    try:
        async with acting(conn, who):
            tag = await conn.execute(sql, *args)
    except asyncpg.PostgresError as exc:
        return str(exc.sqlstate)
    return int(tag.split()[-1])


async def check_row(
    conn: asyncpg.Connection, call_id: uuid.UUID, model: Model, frozen: Any, previous: Any
) -> Any:
    row = await conn.fetchrow("select * from public.calls where id = $1", call_id)
    assert (row["status"], row["end_reason"], row["version"]) == (
        model.status.value,
        _v(model.reason),
        model.version,
    )
    ended = row["status"] == Status.ENDED
    assert (row["end_reason"] is not None) == ended == (row["ended_at"] is not None)
    assert (row["accepted_at"] is not None) == model.accepted
    assert row["ended_by"] == model.ended_by
    assert (row["caller_id"], row["callee_id"]) == (model.caller, model.callee)
    assert row["created_at"] <= row["updated_at"]
    if row["accepted_at"] is not None:
        assert row["created_at"] <= row["accepted_at"] < row["ring_deadline"]
    if ended:
        assert row["ended_at"] >= (row["accepted_at"] or row["created_at"])
    if row["end_reason"] == EndReason.MISSED:
        assert row["ended_at"] >= row["ring_deadline"]
    if previous is not None:
        assert row["updated_at"] >= previous["updated_at"]
        assert row["ring_deadline"] == previous["ring_deadline"]  # never extended
    if frozen is not None:
        assert tuple(row) == tuple(frozen)  # an ended row never changes
    events = await conn.fetch(
        "select event, from_status, to_status, end_reason, actor from public.call_audit"
        " where call_id = $1 and event in ('call_created', 'call_accepted', 'call_ended')"
        " order by id",
        call_id,
    )
    assert [tuple(e) for e in events] == model.events
    assert len(events) == row["version"]  # one status event per change, the creation included
    return row


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(due=st.booleans(), plan=steps)
async def test_random_writes_keep_the_call_legal(
    conn: asyncpg.Connection, due: bool, plan: list[Step]
) -> None:
    caller, callee, stranger = [await create_user(conn) for _ in range(3)]
    if due:  # the system may seed ring_deadline; here it has passed already
        call_id = await commit_as(
            conn,
            OWNER,
            "insert into public.calls (caller_id, callee_id, ring_deadline)"
            " values ($1, $2, now() - interval '1 second') returning id",
            caller,
            callee,
        )
        creator = Actor.SYSTEM.value
    else:
        call_id = await insert_call(conn, caller, callee)
        creator = Actor.CALLER.value
    model = Model(caller, callee, due, events=[("call_created", None, "ringing", None, creator)])
    who = {
        Actor.CALLER.value: user(caller),
        Actor.CALLEE.value: user(callee),
        Actor.SYSTEM.value: OWNER,
        Actor.OPERATOR.value: OPERATOR,
        UNRELATED: user(stranger),
    }
    previous = await check_row(conn, call_id, model, None, None)
    frozen = None
    for step in plan:
        expected = model.expect(step)
        outcome = await run_step(conn, who[step.actor], call_id, step)
        assert outcome == expected, f"{step}: expected {expected}, got {outcome}"
        if outcome == 1:
            assert isinstance(step, Move)
            model.apply(step)
        previous = await check_row(conn, call_id, model, frozen, previous)
        if model.status is Status.ENDED and frozen is None:
            frozen = previous
