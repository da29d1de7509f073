"""One visibility rule: orchestrator.audit_readers decides which audit events a participant may
read, and the call_audit RLS policy and the MQTT relay's SQL both return exactly its answer."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from orchestrator.adapters.mqtt import relay_events
from orchestrator.adapters.postgres import relay_sql
from tests.support.db import as_user, create_user, insert_call

pytestmark = pytest.mark.postgres

# Every event the audit's CHECK allows, plus those issue 11 adds (participant presence).
EVENTS = {
    "call_created": "both",
    "call_accepted": "both",
    "call_ended": "both",
    "token_issued": "actor",
    "push_sent": "callee",
    "push_failed": "callee",
    "device_pruned": "callee",
    "operator_action": "nobody",
}


async def _allowed_events(conn: asyncpg.Connection) -> set[str]:
    """The events call_audit's CHECK constraint accepts (some may come from later releases)."""
    definition: str = await conn.fetchval(
        "select string_agg(pg_get_constraintdef(oid), ' ') from pg_constraint"
        " where conrelid = 'public.call_audit'::regclass and contype = 'c'"
    )
    return {
        e for e in [*EVENTS, "participant_joined", "participant_left"] if f"'{e}'" in definition
    }


async def test_rls_and_the_relay_agree_for_every_event(db: asyncpg.Connection) -> None:
    caller, callee, stranger = await create_user(db), await create_user(db), await create_user(db)
    call_id = await insert_call(db, caller, callee)
    events = await _allowed_events(db)
    assert set(EVENTS) <= events
    ids: dict[str, int] = {}
    for event in sorted(events):
        ids[event] = await db.fetchval(
            "insert into public.call_audit (call_id, actor_id, actor, event)"
            " values ($1, $2, 'caller', $3) returning id",
            call_id,
            caller,
            event,
        )
    by_rls: dict[int, set[uuid.UUID]] = {i: set() for i in ids.values()}
    for user in (caller, callee, stranger):
        async with as_user(db, user):
            for row in await db.fetch(
                "select id from public.call_audit where call_id = $1", call_id
            ):
                by_rls.setdefault(row["id"], set()).add(user)
    # The relay's page query, run exactly as the relay runs it (everything after id 0).
    top = max(ids.values())
    page = await db.fetch(relay_sql.PAGE_SQL, 0, "1:1:", top, 10_000)
    by_relay = {r["id"]: set(relay_events.recipients(r)) for r in page if r["id"] in by_rls}
    for event, row_id in ids.items():
        assert by_relay[row_id] == by_rls[row_id], event
    expected = {"both": {caller, callee}, "actor": {caller}, "callee": {callee}, "nobody": set()}
    for event, who in EVENTS.items():
        assert by_rls[ids[event]] == expected[who], event
    for presence in events - set(EVENTS):  # participant_joined/left: readable by both
        assert by_rls[ids[presence]] == {caller, callee}, presence
    assert all(stranger not in users for users in by_rls.values())
