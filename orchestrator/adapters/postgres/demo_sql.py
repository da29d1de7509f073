"""The SQL of `orchestrator demo`: demo users, devices, scenarios and the printed timeline."""

from __future__ import annotations

TIMELINE_SINCE = (
    "select a.id, a.event, a.actor, a.to_status, a.end_reason, a.detail, c.caller_id,"
    " c.callee_id from public.call_audit a join public.calls c on c.id = a.call_id where"
    " a.id > $1 and c.caller_id = any($2::uuid[]) order by a.id"
)
CALL_SUMMARY = (
    "select c.end_reason, (select string_agg(x.k || '=' || x.n, ' ' order by x.k) from (select"
    " d.kind as k, count(*) as n from public.push_deliveries as d where d.call_id = c.id"
    " and d.status = 'sent' group by d.kind) as x) as pushes from public.calls as c"
    " where c.id = $1"
)
ANY_PENDING_DELIVERY = (
    "select exists (select 1 from public.push_deliveries where status = 'pending')"
)
INSERT_DEVICE = (
    "insert into public.push_devices (user_id, platform, token, voip_token) values ($1, $2, $3, $4)"
)
CALL_STATUS = "select status from public.calls where id = $1"
SET_ROLE_AUTHENTICATED = "set local role authenticated"
SET_JWT_CLAIMS = "select set_config('request.jwt.claims', $1, true)"
INSERT_CALL = (
    "insert into public.calls (id, callee_id) values (coalesce($1, gen_random_uuid()), $2)"
    " returning id"
)
SET_CALL_STATUS = "update public.calls set status = $2, end_reason = $3 where id = $1"
RING_SENT = (
    "select exists (select 1 from public.push_deliveries where call_id = $1 and kind ="
    " 'ring' and status = 'sent')"
)
HEARTBEAT = "select public.call_heartbeat($1)"
AUTH_USER_COLUMNS = (
    "select column_name from information_schema.columns where table_schema = 'auth' and"
    " table_name = 'users'"
)
HAS_AUTH_USERS = "select to_regclass('auth.users') is not null"
PRUNE_ON = "select set_config('orchestrator.prune', 'on', true)"
DELETE_AUDIT_OF = "delete from public.call_audit where call_id = any($1::uuid[])"
DELETE_DELIVERIES_OF = "delete from public.push_deliveries where call_id = any($1::uuid[])"
DELETE_CALLS = "delete from public.calls where id = any($1::uuid[])"
DELETE_DEMO_USERS = (
    "delete from auth.users where id = any($1::uuid[]) and email like '%@' || $2::text"
)
CALLS_OF_USERS = (
    "select id from public.calls where caller_id = any($1::uuid[]) or callee_id = any($1::uuid[])"
)


def insert_auth_user(columns: list[str], placeholders: list[str]) -> str:
    """GoTrue's auth.users differs between versions: the demo writes the columns it found."""
    return f"insert into auth.users ({', '.join(columns)}) values ({', '.join(placeholders)})"
