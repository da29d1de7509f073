"""Operator tools, run as an operator runs them: the real `orchestrator` CLI in a subprocess.

`call show` (timeline, no device tokens), `call end` (audited as the operator, refused reasons
exit 2, unknown ids exit 1), `call redrive` (failed deliveries within their deadline go out
again through a running worker) and `prune --older-than DAYS` (the only way rows leave the
append-only tables).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from typing import Any

import asyncpg
import pytest

from orchestrator.domain.push import Permanent
from tests.support.db import add_device, client_update, create_user, insert_call
from tests.support.rls import OWNER, SERVICE_ROLE, Who, acting, attempt, rolled_back, user
from tests.support.wait import wait_for
from tests.support.worker import running_worker

pytestmark = pytest.mark.postgres

OPERATOR = "alice.ops"


async def cli(dsn: str, *args: str) -> tuple[int, str, str]:
    """Run `orchestrator ARGS…` against `dsn`; returns (exit code, stdout, stderr)."""
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "LOG_FORMAT": "json",
        "ORCHESTRATOR_OPERATOR": OPERATOR,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchestrator",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _audit(conn: asyncpg.Connection, call_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        "select id, actor, actor_id, event, to_status, end_reason, detail"
        " from public.call_audit where call_id = $1 order by id",
        call_id,
    )


def _detail(row: asyncpg.Record) -> dict[str, Any]:
    value = row["detail"]
    return json.loads(value) if isinstance(value, str) else dict(value)


async def _deliveries(conn: asyncpg.Connection, call_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        "select * from public.push_deliveries where call_id = $1 order by id", call_id
    )


async def _pair(conn: asyncpg.Connection) -> tuple[uuid.UUID, uuid.UUID]:
    return await create_user(conn, name="Ada"), await create_user(conn)


# --- call show -------------------------------------------------------------------------------


async def test_show_prints_the_timeline_and_deliveries_but_no_device_tokens(
    fresh_dsn: str,
) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    caller, callee = await _pair(conn)
    # APNs tokens are 64+ hex characters (abuse limits): unique, and searchable in the output.
    secrets = [f"fcm-secret-{uuid.uuid4().hex}", uuid.uuid4().hex * 2]
    voip = uuid.uuid4().hex * 2
    await add_device(conn, callee, "android", token=secrets[0])
    await add_device(conn, callee, "ios", token=secrets[1], voip_token=voip)
    async with running_worker(fresh_dsn):
        call_id = await insert_call(conn, caller, callee)

        async def rung() -> bool:
            rows = await _deliveries(conn, call_id)
            return sum(r["kind"] == "ring" and r["status"] == "sent" for r in rows) == 2

        await wait_for(rung)
        await client_update(conn, callee, call_id, "accepted")

        async def stopped() -> bool:
            rows = await _deliveries(conn, call_id)
            return any(r["kind"] == "stop" and r["status"] == "sent" for r in rows)

        await wait_for(stopped)
        await client_update(conn, caller, call_id, "ended", "completed")

    code, out, err = await cli(fresh_dsn, "call", "show", str(call_id))
    assert code == 0, out + err
    header, timeline = out.split("timeline:", 1)
    timeline, deliveries = timeline.split("deliveries:", 1)
    assert f"call {call_id}: ended/completed" in header
    assert f"caller={caller}" in header and f"callee={callee}" in header
    events = [line.split()[3] for line in timeline.strip().splitlines()]
    assert events[0] == "call_created" and events[-1] == "call_ended"
    assert events.count("push_sent") == 3 and "call_accepted" in events
    lines = deliveries.strip().splitlines()
    assert [line.split()[1] for line in lines] == ["ring", "ring", "stop"]
    assert all(" sent " in line and "sent=-" not in line for line in lines)
    for secret in (*secrets, voip):
        assert secret not in out and secret not in err
    await conn.close()


async def test_show_of_an_unknown_call_exits_1_and_a_malformed_id_exits_2(fresh_dsn: str) -> None:
    code, out, _ = await cli(fresh_dsn, "call", "show", str(uuid.uuid4()))
    assert code == 1 and "not found" in out
    code, _, err = await cli(fresh_dsn, "call", "show", "not-a-call-id")
    assert code == 2 and "not a call id" in err


# --- call end --------------------------------------------------------------------------------


async def test_end_as_operator_is_audited_with_the_operator_name(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    caller, callee = await _pair(conn)
    call_id = await insert_call(conn, caller, callee)  # no worker: it stays ringing

    code, out, err = await cli(fresh_dsn, "call", "end", str(call_id), "--reason", "failed")
    assert code == 0, out + err
    assert f"call {call_id} ended: failed" in out
    row = await conn.fetchrow("select * from public.calls where id = $1", call_id)
    assert (row["status"], row["end_reason"], row["ended_by"]) == ("ended", "failed", None)
    assert row["ended_at"] is not None and row["version"] == 2
    audit = await _audit(conn, call_id)
    assert [(r["event"], r["actor"]) for r in audit] == [
        ("call_created", "caller"),
        ("call_ended", "operator"),
        ("operator_action", "operator"),
    ]
    ended, action = audit[1], audit[2]
    assert ended["end_reason"] == "failed" and ended["actor_id"] is None
    assert _detail(ended)["operator"] == OPERATOR
    assert _detail(action) == {"operator": OPERATOR, "action": "end", "end_reason": "failed"}
    await conn.close()


async def test_end_refuses_reasons_an_operator_may_not_use(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    caller, callee = await _pair(conn)
    ringing = await insert_call(conn, caller, callee)
    for reason in ("completed", "declined", "cancelled", "max_duration", "nonsense"):
        code, out, err = await cli(fresh_dsn, "call", "end", str(ringing), "--reason", reason)
        assert code == 2, (reason, out, err)
        assert "an operator may end a ringing call with:" in out
        assert "completed" not in out.split("with:", 1)[1]
    other_caller, other_callee = await _pair(conn)
    accepted = await insert_call(conn, other_caller, other_callee)
    await client_update(conn, other_callee, accepted, "accepted")
    code, out, _ = await cli(fresh_dsn, "call", "end", str(accepted), "--reason", "busy")
    # Presence (second release) added the system's completed and connection_lost.
    assert (
        code == 2 and "accepted call with: completed, connection_lost, failed, max_duration" in out
    )
    # Nothing changed and nothing was audited for the refused attempts.
    rows = await conn.fetch(
        "select id, status, version from public.calls where id = any($1)", [ringing, accepted]
    )
    assert {(r["status"], r["version"]) for r in rows} == {("ringing", 1), ("accepted", 2)}
    assert not await conn.fetchval(
        "select count(*) from public.call_audit where event = 'operator_action'"
    )
    # An ended call cannot be ended again, with any reason.
    code, _, _ = await cli(fresh_dsn, "call", "end", str(ringing), "--reason", "failed")
    assert code == 0
    code, out, _ = await cli(fresh_dsn, "call", "end", str(ringing), "--reason", "failed")
    assert code == 2 and "ended call with: nothing" in out
    await conn.close()


async def test_end_of_an_unknown_call_exits_1(fresh_dsn: str) -> None:
    code, out, _ = await cli(fresh_dsn, "call", "end", str(uuid.uuid4()), "--reason", "failed")
    assert code == 1 and "not found" in out


async def test_end_missed_before_the_deadline_is_refused_cleanly(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    caller, callee = await _pair(conn)
    call_id = await insert_call(conn, caller, callee)  # deadline 45 s away
    code, out, err = await cli(fresh_dsn, "call", "end", str(call_id), "--reason", "missed")
    assert "Traceback" not in err, err
    assert code == 2, out + err
    await conn.close()


# --- call redrive ----------------------------------------------------------------------------


async def test_redrive_sends_failed_deliveries_again_through_a_running_worker(
    fresh_dsn: str,
) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    caller, callee = await _pair(conn)
    failing = f"ok-fcm-fails-once-{uuid.uuid4().hex}"
    await add_device(conn, callee, "android", token=failing)
    await add_device(conn, callee, "android")
    # A second call whose only device fails: it ends `unreachable`, so its ring is not redriven.
    lone_caller, lone_callee = await _pair(conn)
    doomed = f"ok-fcm-fails-{uuid.uuid4().hex}"
    await add_device(conn, lone_callee, "android", token=doomed)
    # Long enough a ring that the redrive happens well within the deadline.
    async with running_worker(fresh_dsn, RING_TIMEOUT_SECONDS="40") as worker:
        worker.provider.script(failing, Permanent("InternalServerError"))
        worker.provider.script(doomed, Permanent("InternalServerError"))
        call_id = await insert_call(conn, caller, callee)
        lone = await insert_call(conn, lone_caller, lone_callee)

        async def one_failed_one_sent() -> list[asyncpg.Record] | None:
            rows = await _deliveries(conn, call_id)
            statuses = sorted(r["status"] for r in rows if r["kind"] == "ring")
            return rows if statuses == ["failed", "sent"] else None

        rows = await wait_for(one_failed_one_sent)
        failed = next(r for r in rows if r["status"] == "failed")
        assert failed["last_error"] == "InternalServerError"

        async def lone_unreachable() -> bool:
            status = await conn.fetchval("select end_reason from public.calls where id = $1", lone)
            return status == "unreachable"

        await wait_for(lone_unreachable)
        assert len(worker.provider.sent_to(failing)) == 1

        code, out, err = await cli(fresh_dsn, "call", "redrive", str(call_id))
        assert code == 0, out + err
        assert f"call {call_id}: 1 delivery redriven" in out

        async def resent() -> bool:
            row = await conn.fetchrow(
                "select status, last_error from public.push_deliveries where id = $1",
                failed["id"],
            )
            return row["status"] == "sent" and row["last_error"] is None

        await wait_for(resent)  # the NOTIFY after the redrive woke the worker
        assert len(worker.provider.sent_to(failing)) == 2

        code, out, _ = await cli(fresh_dsn, "call", "redrive", str(lone))
        assert code == 0 and "0 deliveries redriven" in out
        assert (
            await conn.fetchval(
                "select status from public.push_deliveries where call_id = $1", lone
            )
            == "failed"
        )
        assert len(worker.provider.sent_to(doomed)) == 1
        assert await conn.fetchval("select status from public.calls where id = $1", call_id) == (
            "ringing"
        )
        await client_update(conn, caller, call_id, "ended", "cancelled")

    audit = await _audit(conn, call_id)
    actions = [r for r in audit if r["event"] == "operator_action"]
    assert len(actions) == 1 and actions[0]["actor"] == "operator"
    assert _detail(actions[0]) == {
        "operator": OPERATOR,
        "action": "redrive",
        "deliveries": [failed["id"]],
    }
    after = [r for r in audit if r["id"] > actions[0]["id"] and r["event"] == "push_sent"]
    assert any(_detail(r)["delivery_id"] == failed["id"] for r in after)
    (lone_action,) = [r for r in await _audit(conn, lone) if r["event"] == "operator_action"]
    assert _detail(lone_action)["deliveries"] == []
    await conn.close()


async def test_redrive_of_an_unknown_call_exits_1_cleanly(fresh_dsn: str) -> None:
    code, out, err = await cli(fresh_dsn, "call", "redrive", str(uuid.uuid4()))
    assert "Traceback" not in err, err
    assert code == 1 and "not found" in out


# --- prune -----------------------------------------------------------------------------------


async def _backdate(conn: asyncpg.Connection, call_id: uuid.UUID, days: int) -> None:
    """Move a call's history `days` into the past.

    The database refuses this on purpose: the calls trigger keeps every timestamp immutable and
    call_audit is append-only (CA002 / CA020). `session_replication_role = replica` switches
    ordinary triggers off for this owner (superuser) session only; CHECK constraints still
    hold, so every timestamp moves by the same amount and stays consistent.
    """
    async with conn.transaction():
        await conn.execute("set local session_replication_role = replica")
        back = "make_interval(days => $2)"
        await conn.execute(
            f"update public.calls set created_at = created_at - {back},"
            f" ring_deadline = ring_deadline - {back}, accepted_at = accepted_at - {back},"
            f" ended_at = ended_at - {back}, updated_at = updated_at - {back} where id = $1",
            call_id,
            days,
        )
        await conn.execute(
            f"update public.call_audit set occurred_at = occurred_at - {back} where call_id = $1",
            call_id,
            days,
        )
        await conn.execute(
            f"update public.push_deliveries set created_at = created_at - {back},"
            f" sent_at = sent_at - {back} where call_id = $1",
            call_id,
            days,
        )


async def _counts(conn: asyncpg.Connection, call_id: uuid.UUID) -> tuple[int, int, int, int]:
    row = await conn.fetchrow(
        "select (select count(*) from public.calls where id = $1) as calls,"
        " (select count(*) from public.call_audit where call_id = $1) as audit,"
        " (select count(*) from public.push_deliveries where call_id = $1) as deliveries,"
        " (select count(*) from orchestrator.jobs where call_id = $1) as jobs",
        call_id,
    )
    return row["calls"], row["audit"], row["deliveries"], row["jobs"]


async def test_prune_removes_only_old_ended_calls_with_their_history(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    users = [await create_user(conn) for _ in range(6)]
    for callee in users[1::2]:
        await add_device(conn, callee, "android")
    async with running_worker(fresh_dsn, RING_TIMEOUT_SECONDS="30"):
        old = await insert_call(conn, users[0], users[1])
        recent = await insert_call(conn, users[2], users[3])
        ringing = await insert_call(conn, users[4], users[5])

        async def all_rung() -> bool:
            return await conn.fetchval(
                "select count(*) = 3 from public.push_deliveries where kind = 'ring'"
                " and status = 'sent'"
            )

        await wait_for(all_rung)
        for caller, call_id in ((users[0], old), (users[2], recent)):
            await client_update(conn, caller, call_id, "ended", "cancelled")

        async def settled() -> bool:
            return not await conn.fetchval(
                "select count(*) from public.push_deliveries where status = 'pending'"
            )

        await wait_for(settled)  # stop and missed pushes of the two cancelled calls are out
    await _backdate(conn, old, 40)
    await _backdate(conn, recent, 20)
    await _backdate(conn, ringing, 40)  # old, but never ended: never pruned
    before = {c: await _counts(conn, c) for c in (old, recent, ringing)}
    assert before[old][:3] == before[recent][:3] and before[old][2] == 3  # ring, stop, missed

    code, out, err = await cli(fresh_dsn, "prune", "--older-than", "30")
    assert code == 0, out + err
    assert "pruned 1 ended call(s) older than 30 day(s)" in out
    assert await _counts(conn, old) == (0, 0, 0, 0)
    assert await _counts(conn, recent) == before[recent]
    assert await _counts(conn, ringing) == before[ringing]
    assert await conn.fetchval("select count(*) from auth.users") == 6  # people stay

    code, out, _ = await cli(fresh_dsn, "prune", "--older-than", "30")
    assert code == 0 and "pruned 0 ended call(s)" in out
    code, _, err = await cli(fresh_dsn, "prune", "--older-than", "-1")
    assert code == 2 and "--older-than" in err
    code, out, _ = await cli(fresh_dsn, "prune", "--older-than", "10")
    assert code == 0 and "pruned 1 ended call(s)" in out
    assert await _counts(conn, recent) == (0, 0, 0, 0)
    assert (await _counts(conn, ringing))[0] == 1
    await conn.close()


async def _try(
    conn: asyncpg.Connection, who: Who, sql: str, *args: Any, prune_setting: bool
) -> str | None:
    """Run `sql` as `who` (optionally with prune's setting on), always rolled back: SQLSTATE."""
    try:
        async with rolled_back(conn), acting(conn, who):
            if prune_setting:
                await conn.execute("select set_config('orchestrator.prune', 'on', true)")
            await conn.execute(sql, *args)
    except asyncpg.PostgresError as exc:
        return str(exc.sqlstate)
    return None


async def test_audit_rows_cannot_be_deleted_any_other_way(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    caller, callee = await _pair(conn)
    call_id = await insert_call(conn, caller, callee)
    await client_update(conn, caller, call_id, "ended", "cancelled")
    await _backdate(conn, call_id, 400)
    delete_audit = "delete from public.call_audit where call_id = $1"
    delete_call = "delete from public.calls where id = $1"
    # The owner itself (the worker's role on Supabase) without prune's setting: refused.
    assert (await attempt(conn, OWNER, delete_audit, call_id)).sqlstate == "CA020"
    assert (await attempt(conn, OWNER, delete_call, call_id)).sqlstate == "CA020"
    assert (await attempt(conn, OWNER, "truncate public.call_audit")).sqlstate == "CA020"
    assert (await attempt(conn, OWNER, "update public.call_audit set event = event")).sqlstate == (
        "CA020"
    )
    # service_role (BYPASSRLS) and a participant: refused, even with prune's setting on.
    for who in (SERVICE_ROLE, user(caller)):
        for sql in (delete_audit, delete_call):
            for setting in (False, True):
                sqlstate = await _try(conn, who, sql, call_id, prune_setting=setting)
                assert sqlstate in ("CA020", "42501"), (who, sql, setting, sqlstate)
    assert (await _counts(conn, call_id))[:2] == (1, 2)
    code, out, _ = await cli(fresh_dsn, "prune", "--older-than", "365")
    assert code == 0 and "pruned 1" in out
    assert await _counts(conn, call_id) == (0, 0, 0, 0)
    await conn.close()


async def test_erasing_a_user_keeps_the_history_with_opaque_ids(fresh_dsn: str) -> None:
    """The runbook's erasure procedure: delete from auth.users; calls and audit remain."""
    conn = await asyncpg.connect(fresh_dsn)
    caller, callee = await _pair(conn)
    await add_device(conn, callee, "android")
    call_id = await insert_call(conn, caller, callee)
    await client_update(conn, caller, call_id, "ended", "cancelled")
    assert await conn.execute("delete from auth.users where id = $1", caller) == "DELETE 1"
    row = await conn.fetchrow("select * from public.calls where id = $1", call_id)
    assert row["caller_id"] is None and row["callee_id"] == callee and row["ended_by"] is None
    assert row["end_reason"] == "cancelled" and row["version"] > 2  # each set-null bumps it
    actor_ids = [r["actor_id"] for r in await _audit(conn, call_id) if r["actor"] == "caller"]
    assert actor_ids == [caller, caller]  # call_created, call_ended: an opaque id now
    assert await conn.execute("delete from auth.users where id = $1", callee) == "DELETE 1"
    assert not await conn.fetchval("select count(*) from public.push_devices")
    assert await conn.fetchval(
        "select count(*) from public.push_deliveries where call_id = $1 and device_id is null"
        " and recipient_id is null",
        call_id,
    ) == await conn.fetchval(
        "select count(*) from public.push_deliveries where call_id = $1", call_id
    )
    await conn.close()
