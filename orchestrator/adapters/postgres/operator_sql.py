"""The SQL of the operator tools (`orchestrator call show|end|redrive`, `orchestrator prune`)."""

from __future__ import annotations

AUDIT_ACTION = (
    "insert into public.call_audit (call_id, actor, event, detail) values ($1, 'operator',"
    " 'operator_action', $2::jsonb)"
)
CALL = "select c.* from public.calls as c where c.id = $1"
TIMELINE = (
    "select occurred_at, actor, event, from_status, to_status, end_reason, detail from"
    " public.call_audit where call_id = $1 order by id"
)
DELIVERIES = (
    "select id, kind, provider, status, attempts, last_error, sent_at, acked_at from"
    " public.push_deliveries where call_id = $1 order by id"
)
NOTIFY_CALL = "select pg_notify('orchestrator_calls', $1)"
LOCK_CALL = (
    "select status, ring_deadline <= now() as deadline_passed from public.calls where id ="
    " $1 for update"
)
SET_OPERATOR = "select set_config('orchestrator.operator', $1, true)"
END_CALL = "update public.calls set status = 'ended', end_reason = $2 where id = $1"
CALL_EXISTS = "select exists (select 1 from public.calls where id = $1)"
# Only failed deliveries that are sendable (orchestrator.delivery_void_reason) go back.
REDRIVE = """
update public.push_deliveries d
set status = 'pending', last_error = null, next_attempt_at = now(), attempts = 0,
    locked_until = null, locked_by = null
from public.calls c
where d.call_id = $1 and c.id = d.call_id and d.status = 'failed'
  and orchestrator.delivery_void_reason(
        d.kind, d.expires_at, c.status,
        (select v from public.push_devices v where v.id = d.device_id)) is null
returning d.id
"""
PRUNE_ON = "select set_config('orchestrator.prune', 'on', true)"
DELETE_AUDIT_OF = "delete from public.call_audit where call_id = any($1)"
DELETE_DELIVERIES_OF = "delete from public.push_deliveries where call_id = any($1)"
DELETE_CALLS = "delete from public.calls where id = any($1)"
ENDED_CALLS_OLDER_THAN = (
    "select id from public.calls where status = 'ended' and ended_at < now() -"
    " make_interval(days => $1) order by ended_at limit $2 for update skip locked"
)
