"""RLS, grants and triggers as PostgREST would meet them: every actor x every operation.

Actors: the caller, the callee, an unrelated signed-in user, `anon`, `service_role` (all through
`as_user`, i.e. SET LOCAL ROLE + request.jwt.claims) and the owner connection (the system).
Each case runs in a transaction that is rolled back, against one committed `World`, and states
the exact answer: a SQLSTATE (42501 for grants/RLS/privileges, the CA0xx codes of
20261201000200_call_state_machine.sql for the trigger) or the number of rows the statement saw
or changed (0 = filtered out by RLS, never an error).

Cases that must commit (user deletion, token moves, per-minute limit, timers) are separate tests
further down.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from tests.support.db import add_device, create_user, insert_call
from tests.support.rls import (
    ANON,
    OWNER,
    SERVICE_ROLE,
    Who,
    acting,
    attempt,
    commit_as,
    rolled_back,
    user,
)
from tests.support.wait import wait_for

pytestmark = pytest.mark.postgres

SECURITY_DEFINER_RPCS = {
    "public.register_push_device(text,text,text,text,text)",
    "public.call_ring_summary(uuid)",
    "public.ack_ring(uuid,uuid)",
    "public.call_heartbeat(uuid)",  # presence (second release)
}


@dataclass
class World:
    """Committed fixtures every case reads; cases never change them (they roll back)."""

    ids: dict[str, Any]

    def who(self, actor: str) -> Who:
        fixed = {"anon": ANON, "service_role": SERVICE_ROLE, "owner": OWNER}
        if actor in fixed:
            return fixed[actor]
        return user(self.ids[ACTOR_USERS[actor]])


# Relative to `ring_call` (A calls B): caller = A, callee = B, other = C (unrelated).
# acc_caller / acc_callee are D and E of `accepted_call`; free = F1, who has no calls at all.
ACTOR_USERS = {
    "caller": "A",
    "callee": "B",
    "other": "C",
    "acc_caller": "D",
    "acc_callee": "E",
    "free": "F1",
}


@dataclass(frozen=True)
class W:
    """A parameter taken from the world (a user, call, device or delivery id)."""

    key: str


@pytest.fixture(scope="module")
async def conn(migrated_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(migrated_dsn)
    yield connection
    await connection.close()


@pytest.fixture(scope="module")
async def world(conn: asyncpg.Connection) -> World:
    ids: dict[str, Any] = {}
    for name in ("A", "B", "C", "D", "E", "F1", "F2"):
        ids[name] = await create_user(conn, name=name)
    a, b = ids["A"], ids["B"]
    ids["ended_call"] = await insert_call(conn, a, b)
    await commit_as(
        conn,
        user(a),
        "update public.calls set status = 'ended', end_reason = 'cancelled' where id = $1",
        ids["ended_call"],
    )
    ids["ring_call"] = await insert_call(conn, a, b)
    ids["accepted_call"] = await insert_call(conn, ids["D"], ids["E"])
    await commit_as(
        conn,
        user(ids["E"]),
        "update public.calls set status = 'accepted' where id = $1",
        ids["accepted_call"],
    )
    ids["dev_A"] = await add_device(conn, a)
    ids["dev_B"] = await add_device(conn, b)
    ids["delivery"] = await conn.fetchval(
        "insert into public.push_deliveries"
        " (call_id, device_id, recipient_id, kind, provider, status, sent_at)"
        " values ($1, $2, $3, 'ring', 'fcm', 'sent', now()) returning id",
        ids["ring_call"],
        ids["dev_B"],
        b,
    )
    # Side-effect events: a device event (callee only), the caller's token, an operator note.
    await conn.execute(
        "insert into public.call_audit (call_id, actor_id, actor, event, detail) values"
        " ($1, null, 'system', 'push_sent', '{\"device\": \"x\"}'),"
        " ($1, $2, 'caller', 'token_issued', '{}'),"
        " ($1, null, 'operator', 'operator_action', '{\"operator\": \"tester\"}')",
        ids["ring_call"],
        a,
    )
    await commit_as(
        conn, user(b), "insert into public.call_blocks (blocked_id) values ($1)", ids["C"]
    )
    return World(ids)


def _resolve(world: World, params: tuple[Any, ...]) -> list[Any]:
    return [world.ids[p.key] if isinstance(p, W) else p for p in params]


TOKEN = f"matrix-{uuid.uuid4().hex}"
UPD = "update public.calls set status = $2, end_reason = $3 where id = $1"
RING, ENDED, ACC = W("ring_call"), W("ended_call"), W("accepted_call")

# (id, actor, sql, params, expected): expected is a SQLSTATE (str) or a row count (int).
Case = tuple[str, str, str, tuple[Any, ...], str | int]

CALLS_READ: list[Case] = [
    (f"select-{actor}", actor, "select 1 from public.calls where id = $1", (RING,), expected)
    for actor, expected in [
        ("caller", 1),
        ("callee", 1),
        ("other", 0),
        ("anon", "42501"),
        ("service_role", 1),
    ]
] + [
    (
        "other-lists-A's-calls",
        "other",
        "select 1 from public.calls where $1 in (caller_id, callee_id)",
        (W("A"),),
        0,
    ),
]

INSERT_AS = "insert into public.calls (callee_id) values ($1)"
CALLS_INSERT: list[Case] = [
    ("as-self", "free", INSERT_AS, (W("F2"),), 1),
    (
        "own-id-for-retries",
        "free",
        "insert into public.calls (id, callee_id, video) values (gen_random_uuid(), $1, false)",
        (W("F2"),),
        1,
    ),
    (
        "forged-caller_id",
        "free",
        "insert into public.calls (caller_id, callee_id) values ($1, $2)",
        (W("F2"), W("A")),
        "42501",
    ),
    ("calling-self", "free", INSERT_AS, (W("F1"),), "CA006"),
    *[
        (
            f"status-{status}",
            "free",
            "insert into public.calls (callee_id, status) values ($1, $2)",
            (W("F2"), status),
            "CA005",
        )
        for status in ("accepted", "ended")
    ],
    *[
        (
            f"client-sets-{column}",
            "free",
            f"insert into public.calls (callee_id, {column}) values ($1, {value})",
            (W("F2"),),
            "42501",
        )
        for column, value in [
            ("created_at", "now()"),
            ("ring_deadline", "now() + interval '1 hour'"),
            ("accepted_at", "now()"),
            ("ended_at", "now()"),
            ("updated_at", "now()"),
            ("version", "1"),
            ("end_reason", "'completed'"),
            ("ended_by", "$1"),
        ]
    ],
    (
        "anon",
        "anon",
        "insert into public.calls (caller_id, callee_id) values ($1, $2)",
        (W("F1"), W("F2")),
        "42501",
    ),
    (
        "service_role",
        "service_role",
        "insert into public.calls (caller_id, callee_id) values ($1, $2)",
        (W("F1"), W("F2")),
        1,
    ),
    (
        "service_role-seeds-ring_deadline",
        "service_role",
        "insert into public.calls (caller_id, callee_id, ring_deadline)"
        " values ($1, $2, now() + interval '5 seconds')",
        (W("F1"), W("F2")),
        1,
    ),
    (
        "service_role-sets-created_at",
        "service_role",
        "insert into public.calls (caller_id, callee_id, created_at) values ($1, $2, now())",
        (W("F1"), W("F2")),
        "CA002",
    ),
    (
        "owner-sets-version",
        "owner",
        "insert into public.calls (caller_id, callee_id, version) values ($1, $2, 7)",
        (W("F1"), W("F2")),
        "CA002",
    ),
    (
        "service_role-non-ringing",
        "service_role",
        "insert into public.calls (caller_id, callee_id, status) values ($1, $2, 'ended')",
        (W("F1"), W("F2")),
        "CA005",
    ),
    (
        "system-is-not-rate-limited",  # A already has an open call; limits bind clients only
        "owner",
        "insert into public.calls (caller_id, callee_id) values ($1, $2)",
        (W("A"), W("F2")),
        1,
    ),
]

CALLS_TRANSITIONS: list[Case] = [
    ("caller-cancels", "caller", UPD, (RING, "ended", "cancelled"), 1),
    ("caller-accepts-own-call", "caller", UPD, (RING, "accepted", None), "CA001"),
    ("caller-declines", "caller", UPD, (RING, "ended", "declined"), "CA001"),
    ("caller-ends-missed", "caller", UPD, (RING, "ended", "missed"), "CA001"),
    ("caller-completes-unanswered", "caller", UPD, (RING, "ended", "completed"), "CA001"),
    ("caller-ends-without-reason", "caller", UPD, (RING, "ended", None), "CA001"),
    ("callee-accepts", "callee", UPD, (RING, "accepted", None), 1),
    ("callee-declines", "callee", UPD, (RING, "ended", "declined"), 1),
    ("callee-busy", "callee", UPD, (RING, "ended", "busy"), 1),
    ("callee-cancels", "callee", UPD, (RING, "ended", "cancelled"), "CA001"),
    ("callee-ends-failed", "callee", UPD, (RING, "ended", "failed"), "CA001"),
    ("callee-ends-glare", "callee", UPD, (RING, "ended", "glare"), "CA001"),
    ("other-accepts-call-not-theirs", "other", UPD, (RING, "accepted", None), 0),
    ("other-cancels", "other", UPD, (RING, "ended", "cancelled"), 0),
    ("anon-cancels", "anon", UPD, (RING, "ended", "cancelled"), "42501"),
    ("service_role-fails", "service_role", UPD, (RING, "ended", "failed"), 1),
    ("service_role-glare-accept", "service_role", UPD, (RING, "accepted", None), 1),
    ("service_role-cancels", "service_role", UPD, (RING, "ended", "cancelled"), "CA001"),
    ("owner-declines", "owner", UPD, (RING, "ended", "declined"), "CA001"),
    ("owner-unreachable", "owner", UPD, (RING, "ended", "unreachable"), 1),
    ("acc-caller-completes", "acc_caller", UPD, (ACC, "ended", "completed"), 1),
    ("acc-callee-completes", "acc_callee", UPD, (ACC, "ended", "completed"), 1),
    ("acc-callee-declines", "acc_callee", UPD, (ACC, "ended", "declined"), "CA001"),
    ("acc-caller-cancels", "acc_caller", UPD, (ACC, "ended", "cancelled"), "CA001"),
    ("acc-callee-reaccepts", "acc_callee", UPD, (ACC, "accepted", None), "CA001"),
    ("acc-back-to-ringing", "acc_callee", UPD, (ACC, "ringing", None), "CA001"),
    ("acc-other-user-completes", "caller", UPD, (ACC, "ended", "completed"), 0),
    ("acc-system-max-duration", "owner", UPD, (ACC, "ended", "max_duration"), 1),
    # Presence (second release): the system ends `completed` (detail.by = 'presence') or
    # `connection_lost`; clients may not claim connection_lost.
    ("acc-system-completes", "service_role", UPD, (ACC, "ended", "completed"), 1),
    ("acc-system-connection-lost", "owner", UPD, (ACC, "ended", "connection_lost"), 1),
    ("acc-caller-connection-lost", "acc_caller", UPD, (ACC, "ended", "connection_lost"), "CA001"),
    ("revive-caller-ringing", "caller", UPD, (ENDED, "ringing", None), "CA003"),
    ("revive-callee-accepts", "callee", UPD, (ENDED, "accepted", None), "CA003"),
    ("re-end-caller", "caller", UPD, (ENDED, "ended", "completed"), "CA003"),
    ("revive-service_role", "service_role", UPD, (ENDED, "ringing", None), "CA003"),
    ("revive-owner", "owner", UPD, (ENDED, "accepted", None), "CA003"),
    ("revive-other", "other", UPD, (ENDED, "ringing", None), 0),
]

# Columns the database owns or that never change. Clients hold no UPDATE grant on them
# (42501); the system has the grant, and the trigger refuses (CA002).
IMMUTABLE = [
    ("id", "gen_random_uuid()"),
    ("caller_id", "$2"),
    ("callee_id", "$2"),
    ("video", "not video"),
    ("ended_by", "$2"),
    ("created_at", "now()"),
    ("ring_deadline", "ring_deadline + interval '1 hour'"),
    ("accepted_at", "now()"),
    ("ended_at", "now()"),
    ("updated_at", "now()"),
    ("version", "version + 1"),
]
CALLS_COLUMNS: list[Case] = [
    (
        f"{actor}-edits-{column}",
        actor,
        f"update public.calls set {column} = {value} where id = $1"
        + (" and $2::uuid is not null" if "$2" not in value else ""),
        (RING, W("C")),
        expected,
    )
    for column, value in IMMUTABLE
    for actor, expected in [
        ("caller", "42501"),
        ("callee", "42501"),
        ("service_role", "CA002"),
        ("owner", "CA002"),
    ]
] + [
    (
        "owner-nulls-live-caller",  # not an erasure: the user still exists
        "owner",
        "update public.calls set caller_id = null where id = $1",
        (RING,),
        "CA002",
    ),
    (
        "owner-nulls-live-caller-of-ended-call",
        "owner",
        "update public.calls set caller_id = null where id = $1",
        (ENDED,),
        "CA003",
    ),
]

CALLS_DELETE: list[Case] = [
    (f"delete-{actor}", actor, "delete from public.calls where id = $1", (ENDED,), expected)
    for actor, expected in [
        ("caller", "42501"),
        ("callee", "42501"),
        ("other", "42501"),
        ("anon", "42501"),
        ("service_role", "42501"),
        ("owner", "CA020"),
    ]
] + [
    (f"truncate-{actor}", actor, "truncate public.calls cascade", (), expected)
    for actor, expected in [
        ("caller", "42501"),
        ("anon", "42501"),
        ("service_role", "42501"),
        ("owner", "CA020"),
    ]
]

AUDIT_OF = "select id from public.call_audit where call_id = $1"
AUDIT: list[Case] = [
    # caller: call_created + own token_issued; callee: call_created + push_sent.
    *[
        (f"read-{actor}", actor, AUDIT_OF, (RING,), expected)
        for actor, expected in [
            ("caller", 2),
            ("callee", 2),
            ("other", 0),
            ("anon", "42501"),
            ("service_role", 4),
        ]
    ],
    *[
        (f"{actor}-reads-{event}", actor, AUDIT_OF + " and event = $2", (RING, event), expected)
        for actor, event, expected in [
            ("caller", "call_created", 1),
            ("caller", "push_sent", 0),
            ("callee", "push_sent", 1),
            ("caller", "token_issued", 1),
            ("callee", "token_issued", 0),
            ("caller", "operator_action", 0),
            ("callee", "operator_action", 0),
        ]
    ],
    *[
        (f"{actor}-reads-{column}", actor, f"select {column} from public.call_audit", (), "42501")
        for actor, column in [("caller", "detail"), ("callee", "*"), ("caller", "txid")]
    ],
    *[
        (
            f"insert-{actor}",
            actor,
            "insert into public.call_audit (call_id, actor, event)"
            " values ($1, 'system', 'push_sent')",
            (RING,),
            expected,
        )
        for actor, expected in [
            ("caller", "42501"),
            ("callee", "42501"),
            ("anon", "42501"),
            ("service_role", 1),
            ("owner", 1),
        ]
    ],
    *[
        (
            f"update-{actor}",
            actor,
            "update public.call_audit set end_reason = 'completed' where call_id = $1",
            (RING,),
            expected,
        )
        for actor, expected in [
            ("caller", "42501"),
            ("anon", "42501"),
            # service_role has no UPDATE/DELETE grant: refused before the CA020 trigger.
            ("service_role", "42501"),
            ("owner", "CA020"),
        ]
    ],
    *[
        (f"delete-{actor}", actor, "delete from public.call_audit where call_id = $1", (RING,), exp)
        for actor, exp in [
            ("callee", "42501"),
            ("anon", "42501"),
            ("service_role", "42501"),
            ("owner", "CA020"),
        ]
    ],
    *[
        (f"truncate-{actor}", actor, "truncate public.call_audit", (), expected)
        for actor, expected in [
            ("caller", "42501"),
            ("anon", "42501"),
            ("service_role", "42501"),
            ("owner", "CA020"),
        ]
    ],
]

DEVICE = "select 1 from public.push_devices where id = $1"
DEVICES: list[Case] = [
    ("read-own", "caller", DEVICE, (W("dev_A"),), 1),
    ("read-others", "caller", DEVICE, (W("dev_B"),), 0),
    ("read-anon", "anon", DEVICE, (W("dev_A"),), "42501"),
    ("read-service_role", "service_role", DEVICE, (W("dev_B"),), 1),
    (
        "insert-own",
        "caller",
        "insert into public.push_devices (platform, token) values ('android', $1)",
        (TOKEN,),
        "42501",  # abuse limits: devices are registered through register_push_device only
    ),
    (
        "insert-for-another-user",
        "caller",
        "insert into public.push_devices (user_id, platform, token) values ($1, 'android', $2)",
        (W("B"), TOKEN),
        "42501",
    ),
    (
        "insert-disabled_at",
        "caller",
        "insert into public.push_devices (platform, token, disabled_at)"
        " values ('android', $1, now())",
        (TOKEN,),
        "42501",
    ),
    (
        "insert-anon",
        "anon",
        "insert into public.push_devices (user_id, platform, token) values ($1, 'android', $2)",
        (W("A"), TOKEN),
        "42501",
    ),
    (
        "insert-service_role",
        "service_role",
        "insert into public.push_devices (user_id, platform, token) values ($1, 'android', $2)",
        (W("B"), TOKEN),
        1,
    ),
    (
        "update-own-token",
        "caller",
        "update public.push_devices set token = $2 where id = $1",
        (W("dev_A"), TOKEN),
        "42501",  # abuse limits: register_push_device only
    ),
    (
        "update-own-last_seen",
        "caller",
        "update public.push_devices set last_seen_at = now() where id = $1",
        (W("dev_A"),),
        "42501",  # abuse limits: register_push_device only (it refreshes last_seen_at)
    ),
    (
        "update-others",
        "caller",
        "update public.push_devices set token = $2 where id = $1",
        (W("dev_B"), TOKEN),
        "42501",
    ),
    *[
        (
            f"update-own-{column}",
            "caller",
            f"update public.push_devices set {column} = {value} where id = $1",
            (W("dev_A"),),
            "42501",
        )
        for column, value in [
            ("disabled_at", "now()"),
            ("disabled_reason", "'x'"),
            ("user_id", "user_id"),
            ("platform", "'ios'"),
            ("created_at", "now()"),
        ]
    ],
    (
        "update-anon",
        "anon",
        "update public.push_devices set last_seen_at = now() where id = $1",
        (W("dev_A"),),
        "42501",
    ),
    (
        "update-service_role-disables",
        "service_role",
        "update public.push_devices set disabled_at = now(), disabled_reason = 'x' where id = $1",
        (W("dev_B"),),
        1,
    ),
    ("delete-own", "caller", "delete from public.push_devices where id = $1", (W("dev_A"),), 1),
    ("delete-others", "caller", "delete from public.push_devices where id = $1", (W("dev_B"),), 0),
    (
        "delete-anon",
        "anon",
        "delete from public.push_devices where id = $1",
        (W("dev_A"),),
        "42501",
    ),
    (
        "delete-service_role",
        "service_role",
        "delete from public.push_devices where id = $1",
        (W("dev_B"),),
        1,
    ),
    ("truncate-caller", "caller", "truncate public.push_devices", (), "42501"),
    ("truncate-anon", "anon", "truncate public.push_devices", (), "42501"),
    ("truncate-service_role", "service_role", "truncate public.push_devices", (), "42501"),
]

DELIVERY_OF = "select id from public.push_deliveries where call_id = $1"
CONTRACT_COLUMNS = (
    "id, call_id, device_id, kind, provider, status, attempts, last_error, created_at, sent_at,"
    " acked_at"
)
DELIVERIES: list[Case] = [
    *[
        (f"read-{actor}", actor, DELIVERY_OF, (RING,), expected)
        for actor, expected in [
            ("callee", 1),
            ("caller", 0),  # the caller gets call_ring_summary only
            ("other", 0),
            ("anon", "42501"),
            ("service_role", 1),
        ]
    ],
    (
        "callee-reads-contract-columns",
        "callee",
        f"select {CONTRACT_COLUMNS} from public.push_deliveries where call_id = $1",
        (RING,),
        1,
    ),
    (
        "caller-reads-contract-columns",
        "caller",
        f"select {CONTRACT_COLUMNS} from public.push_deliveries where call_id = $1",
        (RING,),
        0,
    ),
    *[
        (f"{verb}-{actor}", actor, sql, (RING,), expected)
        for verb, sql in [
            (
                "insert",
                "insert into public.push_deliveries (call_id, kind, provider)"
                " values ($1, 'missed', 'log')",
            ),
            (
                "update",
                "update public.push_deliveries set acked_at = now(), status = 'sent'"
                " where call_id = $1",
            ),
            ("delete", "delete from public.push_deliveries where call_id = $1"),
        ]
        for actor, expected in [
            ("callee", "42501"),
            ("caller", "42501"),
            ("anon", "42501"),
            ("service_role", "42501" if verb == "delete" else 1),
        ]
    ],
    ("truncate-callee", "callee", "truncate public.push_deliveries", (), "42501"),
    ("truncate-anon", "anon", "truncate public.push_deliveries", (), "42501"),
    ("truncate-service_role", "service_role", "truncate public.push_deliveries", (), "42501"),
]

BLOCK = "select 1 from public.call_blocks where blocker_id = $1 and blocked_id = $2"
# In the world, B (callee) blocks C (other).
BLOCKS: list[Case] = [
    *[
        (f"read-{actor}", actor, BLOCK, (W("B"), W("C")), expected)
        for actor, expected in [
            ("callee", 1),  # the blocker
            ("other", 0),  # the blocked user cannot see it
            ("caller", 0),
            ("anon", "42501"),
            ("service_role", 1),
        ]
    ],
    (
        "blocker-blocks-another",
        "callee",
        "insert into public.call_blocks (blocked_id) values ($1)",
        (W("A"),),
        1,
    ),
    (
        "blocked-forges-blocker",
        "other",
        "insert into public.call_blocks (blocker_id, blocked_id) values ($1, $2)",
        (W("B"), W("A")),
        "42501",
    ),
    (
        "blocked-blocks-back",
        "other",
        "insert into public.call_blocks (blocked_id) values ($1)",
        (W("B"),),
        1,
    ),
    (
        "insert-created_at",
        "callee",
        "insert into public.call_blocks (blocked_id, created_at) values ($1, now())",
        (W("A"),),
        "42501",
    ),
    (
        "insert-anon",
        "anon",
        "insert into public.call_blocks (blocker_id, blocked_id) values ($1, $2)",
        (W("B"), W("A")),
        "42501",
    ),
    (
        "blocker-unblocks",
        "callee",
        "delete from public.call_blocks where blocker_id = $1 and blocked_id = $2",
        (W("B"), W("C")),
        1,
    ),
    (
        "blocked-removes-block",
        "other",
        "delete from public.call_blocks where blocker_id = $1",
        (W("B"),),
        0,
    ),
    (
        "blocker-updates",
        "callee",
        "update public.call_blocks set blocked_id = $2 where blocker_id = $1",
        (W("B"), W("A")),
        "42501",
    ),
    (
        "delete-anon",
        "anon",
        "delete from public.call_blocks where blocker_id = $1",
        (W("B"),),
        "42501",
    ),
    ("truncate-blocker", "callee", "truncate public.call_blocks", (), "42501"),
    ("truncate-anon", "anon", "truncate public.call_blocks", (), "42501"),
]

JOBS_OF = "select 1 from orchestrator.jobs where call_id = $1"
JOBS: list[Case] = [
    *[
        (f"{verb}-{actor}", actor, sql, (RING,), expected)
        for verb, sql, service_rows in [
            ("select", JOBS_OF, 2),  # pickup + ring_timeout
            (
                "insert",
                "insert into orchestrator.jobs (call_id, kind, run_at)"
                " values ($1, 'accepted', now())",
                1,
            ),
            ("update", "update orchestrator.jobs set locked_until = now() where call_id = $1", 2),
            ("delete", "delete from orchestrator.jobs where call_id = $1", 2),
        ]
        for actor, expected in [
            ("caller", "42501"),
            ("callee", "42501"),
            ("anon", "42501"),
            ("service_role", service_rows),
        ]
    ],
    *[
        (f"truncate-{actor}", actor, "truncate orchestrator.jobs", (), "42501")
        for actor in ("caller", "anon", "service_role")
    ],
]

SETTINGS: list[Case] = [
    *[
        (f"{verb}-{actor}", actor, sql, (), expected)
        for verb, sql, client, service in [
            ("select", "select 1 from orchestrator.settings", 1, 1),
            (
                "update",
                "update orchestrator.settings set ring_timeout_seconds = ring_timeout_seconds",
                "42501",
                1,
            ),
            ("insert", "insert into orchestrator.settings default values", "42501", "42501"),
            ("delete", "delete from orchestrator.settings", "42501", "42501"),
            ("truncate", "truncate orchestrator.settings", "42501", "42501"),
        ]
        for actor, expected in [
            ("caller", client),
            ("anon", "42501"),
            ("service_role", service),
        ]
    ],
]

SEQUENCES: list[Case] = [
    (f"nextval-{seq}-{actor}", actor, "select nextval($1::text::regclass)", (seq,), "42501")
    for seq in ("public.call_audit_id_seq", "public.push_deliveries_id_seq")
    for actor in ("anon", "caller")
]

RPCS: list[Case] = [
    (f"{rpc.split('(')[0]}-{actor}", actor, f"select {rpc}", args, "42501")
    for rpc, args in [
        ("public.register_push_device('android', $1)", (TOKEN,)),
        ("public.call_ring_summary($1)", (RING,)),
        ("public.ack_ring($1, $2)", (RING, W("dev_B"))),
    ]
    for actor in ("anon", "service_role")
]


def _cases(*groups: tuple[str, list[Case]]) -> list[Any]:
    return [
        pytest.param(actor, sql, params, expected, id=f"{name}:{case_id}")
        for name, cases in groups
        for case_id, actor, sql, params, expected in cases
    ]


MATRIX = _cases(
    ("calls-read", CALLS_READ),
    ("calls-insert", CALLS_INSERT),
    ("calls-transition", CALLS_TRANSITIONS),
    ("calls-column", CALLS_COLUMNS),
    ("calls-delete", CALLS_DELETE),
    ("call_audit", AUDIT),
    ("push_devices", DEVICES),
    ("push_deliveries", DELIVERIES),
    ("call_blocks", BLOCKS),
    ("jobs", JOBS),
    ("settings", SETTINGS),
    ("sequences", SEQUENCES),
    ("rpc", RPCS),
)


@pytest.mark.parametrize(("actor", "sql", "params", "expected"), MATRIX)
async def test_matrix(
    conn: asyncpg.Connection,
    world: World,
    actor: str,
    sql: str,
    params: tuple[Any, ...],
    expected: str | int,
) -> None:
    outcome = await attempt(conn, world.who(actor), sql, *_resolve(world, params))
    if isinstance(expected, str):
        assert outcome.sqlstate == expected, f"expected {expected}, got {outcome}"
    else:
        assert outcome.sqlstate is None, f"expected {expected} row(s), got {outcome}"
        assert outcome.rows == expected


# --- RPCs -----------------------------------------------------------------------------------


async def test_rpcs_are_executable_by_authenticated_only(conn: asyncpg.Connection) -> None:
    for rpc in SECURITY_DEFINER_RPCS:
        allowed = {
            role: await conn.fetchval(
                "select has_function_privilege($1, $2::regprocedure, 'execute')", role, rpc
            )
            for role in ("public", "anon", "authenticated", "service_role")
        }
        assert allowed == {
            "public": False,
            "anon": False,
            "authenticated": True,
            "service_role": False,
        }, rpc


async def test_call_ring_summary_gives_counts_only(conn: asyncpg.Connection, world: World) -> None:
    expected = {"devices": 1, "sent": 1, "acked": 0, "failed": 0}
    for actor in ("caller", "callee"):
        outcome = await attempt(
            conn,
            world.who(actor),
            "select public.call_ring_summary($1)",
            world.ids["ring_call"],
            value=True,
        )
        assert outcome.ok, outcome
        assert json.loads(outcome.value) == expected, actor
    for actor, call_id in [("other", world.ids["ring_call"]), ("caller", uuid.uuid4())]:
        outcome = await attempt(
            conn, world.who(actor), "select public.call_ring_summary($1)", call_id, value=True
        )
        assert outcome.sqlstate == "P0002", (actor, outcome)  # unknown and not-yours alike


async def test_ack_ring_only_by_the_callee(conn: asyncpg.Connection, world: World) -> None:
    ring, dev_b = world.ids["ring_call"], world.ids["dev_B"]
    for actor in ("caller", "other"):
        outcome = await attempt(
            conn, world.who(actor), "select public.ack_ring($1, $2)", ring, dev_b, value=True
        )
        assert outcome.value is False, actor
    async with rolled_back(conn):
        async with acting(conn, world.who("callee")):
            assert await conn.fetchval("select public.ack_ring($1, $2)", ring, dev_b) is True
            summary = json.loads(await conn.fetchval("select public.call_ring_summary($1)", ring))
        acked = await conn.fetchval(
            "select acked_at is not null from public.push_deliveries where id = $1",
            world.ids["delivery"],
        )
    assert summary["acked"] == 1 and acked


async def test_register_push_device_upserts_and_moves_a_token(conn: asyncpg.Connection) -> None:
    first, second = await create_user(conn), await create_user(conn)
    token = f"move-{uuid.uuid4().hex}"
    register = "select public.register_push_device('android', $1)"
    device = await commit_as(conn, user(first), register, token)
    assert await commit_as(conn, user(first), register, token) == device  # an upsert
    await conn.execute(
        "update public.push_devices set disabled_at = now(), disabled_reason = 'x' where id = $1",
        device,
    )
    assert await commit_as(conn, user(second), register, token) == device  # the phone moved
    row = await conn.fetchrow("select * from public.push_devices where id = $1", device)
    assert row["user_id"] == second and row["disabled_at"] is None
    seen = "select count(*) from public.push_devices where token = $1"
    assert await commit_as(conn, user(first), seen, token) == 0
    assert await commit_as(conn, user(second), seen, token) == 1


async def test_register_push_device_moves_a_voip_token_off_a_voip_only_device(
    conn: asyncpg.Connection,
) -> None:
    """The VoIP token of another account's voip-only iOS device moves to this device."""
    first, second = await create_user(conn), await create_user(conn)
    alert, voip = uuid.uuid4().hex * 2, uuid.uuid4().hex * 2  # APNs format: 64+ hex
    old = await commit_as(
        conn, user(first), "select public.register_push_device('ios', null, $1)", voip
    )
    mine = await commit_as(
        conn, user(second), "select public.register_push_device('ios', $1)", alert
    )
    outcome = await attempt(
        conn,
        user(second),
        "select public.register_push_device('ios', $1, $2)",
        alert,
        voip,
        value=True,
    )
    assert outcome.ok, outcome  # fails today: 23514 push_devices_has_token (see report)
    assert outcome.value == mine
    async with rolled_back(conn):
        async with acting(conn, user(second)):
            await conn.execute("select public.register_push_device('ios', $1, $2)", alert, voip)
        await conn.execute("reset role")
        rows = await conn.fetch(
            "select id, user_id, voip_token from public.push_devices where id = any($1::uuid[])",
            [old, mine],
        )
    assert [(r["id"], r["user_id"], r["voip_token"]) for r in rows] == [(mine, second, voip)]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("web", "t"), "22023"),
        (("android", None), "22023"),
        (("android", "t", "v"), "22023"),
        (("ios", None, None), "22023"),
    ],
)
async def test_register_push_device_validates(
    conn: asyncpg.Connection, world: World, args: tuple[Any, ...], expected: str
) -> None:
    placeholders = ", ".join(f"${i + 1}" for i in range(len(args)))
    outcome = await attempt(
        conn, world.who("free"), f"select public.register_push_device({placeholders})", *args
    )
    assert outcome.sqlstate == expected, outcome


# --- functions ------------------------------------------------------------------------------


OUR_FUNCTIONS = """
    select n.nspname || '.' || p.proname
             || '(' || replace(oidvectortypes(p.proargtypes), ' ', '') || ')' as name,
           p.prosecdef, p.proconfig
    from pg_proc p
    join pg_namespace n on n.oid = p.pronamespace
    where n.nspname in ('public', 'orchestrator')
      and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e')
"""


async def test_every_function_sets_an_empty_search_path(conn: asyncpg.Connection) -> None:
    functions = await conn.fetch(OUR_FUNCTIONS)
    assert len(functions) >= 13
    mutable = [f["name"] for f in functions if 'search_path=""' not in (f["proconfig"] or [])]
    assert mutable == []


async def test_security_definer_functions_are_not_executable_by_clients(
    conn: asyncpg.Connection,
) -> None:
    definers = {f["name"] for f in await conn.fetch(OUR_FUNCTIONS) if f["prosecdef"]}
    assert definers >= SECURITY_DEFINER_RPCS
    exposed = [
        (name, role)
        for name in sorted(definers - SECURITY_DEFINER_RPCS)
        for role in ("public", "anon", "authenticated")
        if await conn.fetchval(
            "select has_function_privilege($1, $2::regprocedure, 'execute')", role, name
        )
    ]
    assert exposed == []


async def test_no_client_role_holds_a_sequence(conn: asyncpg.Connection) -> None:
    """Supabase's default privileges grant ALL on new sequences in public; none is needed."""
    held = await conn.fetch(
        """
        select c.oid::regclass::text as seq, r.role
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        cross join (values ('anon'), ('authenticated')) as r (role)
        where c.relkind = 'S' and n.nspname in ('public', 'orchestrator')
          and has_sequence_privilege(r.role, c.oid, 'USAGE, SELECT, UPDATE')
        order by 1, 2
        """
    )
    assert [(h["seq"], h["role"]) for h in held] == []


# --- abuse limits ---------------------------------------------------------------------------


async def test_second_open_outgoing_call_is_refused(conn: asyncpg.Connection, world: World) -> None:
    for actor, callee in [("caller", "C"), ("acc_caller", "F2")]:  # ringing / accepted call
        outcome = await attempt(conn, world.who(actor), INSERT_AS, world.ids[callee])
        assert outcome.sqlstate == "CA010", (actor, outcome)


async def test_no_new_call_while_in_an_accepted_call(
    conn: asyncpg.Connection, world: World
) -> None:
    outcome = await attempt(conn, world.who("acc_callee"), INSERT_AS, world.ids["F2"])
    assert outcome.sqlstate == "CA011", outcome


async def test_calls_per_minute_limit(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    try:
        await conn.execute("update orchestrator.settings set calls_per_minute_per_caller = 2")
        caller, callee = await create_user(conn), await create_user(conn)
        for _ in range(2):
            call_id = await insert_call(conn, caller, callee)
            await commit_as(conn, user(caller), UPD, call_id, "ended", "cancelled")
        outcome = await attempt(conn, user(caller), INSERT_AS, callee)
        assert outcome.sqlstate == "CA012", outcome
        assert "2 calls per minute" in outcome.message
        assert await conn.fetchval("select count(*) from public.calls") == 2
    finally:
        await conn.close()


# --- the ring deadline ----------------------------------------------------------------------


async def test_accept_after_a_seeded_deadline_is_refused(conn: asyncpg.Connection) -> None:
    caller, callee = await create_user(conn), await create_user(conn)
    call_id = await commit_as(
        conn,
        OWNER,
        "insert into public.calls (caller_id, callee_id, ring_deadline)"
        " values ($1, $2, now() - interval '1 second') returning id",
        caller,
        callee,
    )
    for who in (user(callee), OWNER):
        outcome = await attempt(conn, who, UPD, call_id, "accepted", None)
        assert outcome.sqlstate == "CA004", (who, outcome)
    for who, reason in [(OWNER, "missed"), (user(caller), "cancelled"), (user(callee), "declined")]:
        outcome = await attempt(conn, who, UPD, call_id, "ended", reason)
        assert outcome.rows == 1, (who, reason, outcome)


async def test_missed_before_the_deadline_is_refused(
    conn: asyncpg.Connection, world: World
) -> None:
    outcome = await attempt(conn, OWNER, UPD, world.ids["ring_call"], "ended", "missed")
    assert outcome.sqlstate == "23514" and "calls_missed_after_deadline" in outcome.message


async def test_accept_after_the_ring_timeout_is_refused(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    try:
        await conn.execute("update orchestrator.settings set ring_timeout_seconds = 1")
        caller, callee = await create_user(conn), await create_user(conn)
        call_id = await insert_call(conn, caller, callee)
        span = await conn.fetchval(
            "select ring_deadline - created_at from public.calls where id = $1", call_id
        )
        assert span.total_seconds() == 1

        async def due() -> bool:
            due_now: bool = await conn.fetchval(
                "select now() >= ring_deadline from public.calls where id = $1", call_id
            )
            return due_now

        await wait_for(due, timeout=5)
        outcome = await attempt(conn, user(callee), UPD, call_id, "accepted", None)
        assert outcome.sqlstate == "CA004", outcome
    finally:
        await conn.close()


# --- blocks are never revealed --------------------------------------------------------------


async def test_a_block_reads_as_unreachable(conn: asyncpg.Connection) -> None:
    caller, callee = await create_user(conn), await create_user(conn)
    call_id = await insert_call(conn, caller, callee)
    async with acting(conn, OWNER):
        await conn.execute(
            "select set_config('orchestrator.audit_detail', $1, true)",
            json.dumps({str(call_id): {"reason": "blocked"}}),
        )
        await conn.execute(UPD, call_id, "ended", "unreachable")
    assert (
        await conn.fetchval(
            "select detail ->> 'reason' from public.call_audit"
            " where call_id = $1 and event = 'call_ended'",
            call_id,
        )
        == "blocked"
    )
    async with rolled_back(conn), acting(conn, user(caller)):
        assert (
            await conn.fetchval("select end_reason from public.calls where id = $1", call_id)
            == "unreachable"
        )
        ended = await conn.fetchrow(
            "select actor, end_reason from public.call_audit"
            " where call_id = $1 and event = 'call_ended'",
            call_id,
        )
        assert (ended["actor"], ended["end_reason"]) == ("system", "unreachable")
    outcome = await attempt(
        conn, user(caller), "select detail from public.call_audit where call_id = $1", call_id
    )
    assert outcome.sqlstate == "42501"


# --- user deletion --------------------------------------------------------------------------


async def test_user_deletion_erases_ids_and_keeps_history(conn: asyncpg.Connection) -> None:
    gone, peer, third = [await create_user(conn) for _ in range(3)]
    ended = await insert_call(conn, gone, peer)
    await commit_as(conn, user(gone), UPD, ended, "ended", "cancelled")
    ringing = await insert_call(conn, third, gone)
    accepted = await insert_call(conn, peer, third)
    await commit_as(conn, user(third), UPD, accepted, "accepted", None)
    device = await add_device(conn, gone)
    delivery = await conn.fetchval(
        "insert into public.push_deliveries (call_id, device_id, recipient_id, kind, provider)"
        " values ($1, $2, $3, 'ring', 'fcm') returning id",
        ringing,
        device,
        gone,
    )
    calls = [ended, ringing]
    before = {
        r["id"]: r for r in await conn.fetch("select * from public.calls where id = any($1)", calls)
    }
    audit_query = "select * from public.call_audit where call_id = any($1) order by id"
    audit_before = [tuple(r) for r in await conn.fetch(audit_query, calls)]

    assert await conn.execute("delete from auth.users where id = $1", gone) == "DELETE 1"

    after = {
        r["id"]: r for r in await conn.fetch("select * from public.calls where id = any($1)", calls)
    }
    assert after[ended]["caller_id"] is None and after[ended]["ended_by"] is None
    assert after[ended]["callee_id"] == peer
    assert after[ringing]["callee_id"] is None and after[ringing]["caller_id"] == third
    for call_id in calls:
        old, new = before[call_id], after[call_id]
        assert new["version"] > old["version"]  # +1 per cleared reference
        for column in ("status", "end_reason", "created_at", "ring_deadline", "ended_at", "video"):
            assert new[column] == old[column], column
    # The history stays as it was (the erased user's id remains only as an opaque actor id).
    assert [tuple(r) for r in await conn.fetch(audit_query, calls)] == audit_before
    row = await conn.fetchrow("select * from public.push_deliveries where id = $1", delivery)
    assert row is not None and row["device_id"] is None and row["recipient_id"] is None
    # The erasure did not open a way around the trigger: the ended call still refuses changes.
    outcome = await attempt(conn, OWNER, UPD, ended, "ended", "failed")
    assert outcome.sqlstate == "CA003"
    untouched = await conn.fetchrow("select * from public.calls where id = $1", accepted)
    assert untouched["version"] == 2
