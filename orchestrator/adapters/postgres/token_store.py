"""The token server's SQL: load the call, check the session and audit the grant in one statement.
Who may get a token for which call in which state is orchestrator.token_refusal (migration
20261202000600); this statement only calls it.

The database clock decides: `issue_ts` is the database's `now()` and `expire_ts` =
least(now + TTL, accepted_at + MAX_CALL_SECONDS), both whole seconds as the token carries them.
The `token_issued` row is inserted only when a token will be issued; it never holds the token.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

import asyncpg

from orchestrator.domain.model import Status

# `not_after` exists on Supabase's auth.sessions (time-boxed sessions), not on every emulation:
# read it through to_jsonb so the statement works with and without the column.
ISSUE_SQL = """
with c as (
    select id, status,
           case when caller_id = $2::uuid then 1 else 2 end as uid,
           floor(extract(epoch from now()))::bigint as issue_ts,
           floor(extract(epoch from accepted_at + make_interval(secs => $6::int)))::bigint
               as cap_ts
    from public.calls
    where id = $1::uuid and (caller_id = $2::uuid or callee_id = $2::uuid)
), g as (
    select c.*, least(c.issue_ts + $5::int, c.cap_ts) as expire_ts from c
), s as (
    select (not $4::boolean) or exists (
        select 1 from auth.sessions as x
        where x.id = $3::uuid and x.user_id = $2::uuid
          and coalesce((to_jsonb(x) ->> 'not_after')::timestamptz > now(), true)
    ) as ok
), audit as (
    insert into public.call_audit
        (call_id, actor_id, actor, event, from_status, to_status, detail)
    select g.id, $2::uuid, case g.uid when 1 then 'caller' else 'callee' end, 'token_issued',
           g.status as from_status, g.status as to_status,
           jsonb_build_object(
               'uid', g.uid,
               'expires_at', to_char(to_timestamp(g.expire_ts) at time zone 'UTC',
                                     'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
               'token_version', $7::text)
    from g cross join s
    where s.ok
      and orchestrator.token_refusal(g.status, g.uid = 1, $8::boolean, g.issue_ts, g.expire_ts)
          is null
    returning id
)
select s.ok as session_ok, g.status, g.uid, g.issue_ts, g.expire_ts,
       orchestrator.token_refusal(g.status, g.uid = 1, $8::boolean, g.issue_ts, g.expire_ts)
           as refusal,
       (select a.id from audit as a) as audit_id
from s left join g on true
"""


class Outcome(StrEnum):
    ISSUED = "issued"
    NO_SESSION = "no_session"
    NOT_FOUND = "not_found"
    ENDED = "ended"
    MAX_DURATION = "max_duration"  # accepted, but accepted_at + MAX_CALL_SECONDS has passed
    NOT_ACCEPTED = "not_accepted"  # the callee, while the call rings (CALLEE_TOKEN_WHILE_RINGING)


@dataclass(frozen=True, slots=True)
class Grant:
    outcome: Outcome
    status: Status | None = None
    uid: int = 0
    issue_ts: int = 0
    expire_ts: int = 0


class StoreUnavailable(Exception):
    """The database could not be reached in time (503)."""


CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.OperatorInterventionError,
)


async def issue(
    pool: asyncpg.Pool,
    *,
    call_id: UUID,
    user_id: UUID,
    session_id: UUID | None,
    check_session: bool,
    ttl: int,
    max_call_seconds: int,
    token_version: str,
    time_limit: float,
    callee_while_ringing: bool = False,
) -> Grant:
    args = (
        call_id,
        user_id,
        session_id,
        check_session,
        ttl,
        max_call_seconds,
        token_version,
        callee_while_ringing,
    )
    try:
        # One explicit transaction: behind a transaction pooler the unnamed statement's Parse
        # and its Bind then reach the same server connection (see docs/production.md).
        async with asyncio.timeout(time_limit), pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(ISSUE_SQL, *args)
    except CONNECTION_ERRORS as exc:
        raise StoreUnavailable(type(exc).__name__) from None
    assert row is not None
    if not row["session_ok"]:
        return Grant(Outcome.NO_SESSION)
    # The grant is decided once, in SQL (orchestrator.token_refusal); here it is only read.
    status = Status(row["status"]) if row["status"] is not None else None
    if row["refusal"] is not None:
        return Grant(Outcome(row["refusal"]), status)
    assert row["audit_id"] is not None  # the same rule inserted the token_issued row
    return Grant(Outcome.ISSUED, status, row["uid"], row["issue_ts"], row["expire_ts"])


async def ping(pool: asyncpg.Pool, time_limit: float) -> bool:
    try:
        async with asyncio.timeout(time_limit), pool.acquire() as conn:
            # The simple query protocol: one message, fine behind a transaction pooler.
            return bool(await conn.execute("select true"))
    except CONNECTION_ERRORS:
        return False
    except asyncpg.PostgresError:
        return False
