"""The console's SQL (read-only views, operator sessions). Actions live in console_store.

Device tokens never leave the database: deliveries carry a short SHA-256 fingerprint only.
"""

from __future__ import annotations

from orchestrator.adapters.postgres import operator_sql

# auth.users.raw_app_meta_data exists on Supabase, not on every emulation: read it through
# to_jsonb so a revoked role ends console sessions at once where the column exists.
OPERATOR_STILL = """
  coalesce((to_jsonb(u) -> 'raw_app_meta_data' ->> 'orchestrator_role') = 'operator',
           not (to_jsonb(u) ? 'raw_app_meta_data'))
"""

AUTH_SESSION_ALIVE = """
  ((not $2::boolean) or exists (
      select 1 from auth.sessions x
      where x.id = s.auth_session_id and x.user_id = s.user_id
        and coalesce((to_jsonb(x) ->> 'not_after')::timestamptz > now(), true)))
"""

CREATE_SESSION = f"""
with gone as (
  delete from orchestrator.console_sessions where expires_at < now() - interval '1 day'
), s as (
  select $1::bytea as token_hash, $3::uuid as user_id, $4::uuid as auth_session_id
)
insert into orchestrator.console_sessions (token_hash, user_id, auth_session_id, expires_at)
select s.token_hash, s.user_id, s.auth_session_id, to_timestamp($5::float8)
from s join auth.users u on u.id = s.user_id
where {AUTH_SESSION_ALIVE} and {OPERATOR_STILL} and to_timestamp($5::float8) > now()
returning extract(epoch from expires_at - now())::float8 as lifetime
"""

LOOKUP_SESSION = f"""
select s.user_id, u.email from orchestrator.console_sessions s
join auth.users u on u.id = s.user_id
where s.token_hash = $1 and s.expires_at > now() and {AUTH_SESSION_ALIVE} and {OPERATOR_STILL}
"""

DELETE_SESSION = "delete from orchestrator.console_sessions where token_hash = $1"

CALL = """
select c.id, c.caller_id, c.callee_id, c.video, c.status, c.end_reason, c.ended_by,
       c.created_at, c.ring_deadline, c.accepted_at, c.ended_at, c.version,
       ru.email as caller_email, eu.email as callee_email, now() as db_now
from public.calls c
left join auth.users ru on ru.id = c.caller_id
left join auth.users eu on eu.id = c.callee_id
where c.id = $1
"""

AUDIT = """
select a.id, a.occurred_at, a.actor_id, a.actor, a.event, a.from_status, a.to_status,
       a.end_reason, a.detail, u.email as actor_email
from public.call_audit a left join auth.users u on u.id = a.actor_id
where a.call_id = $1 order by a.occurred_at, a.id
"""

DELIVERIES = """
select d.id, d.device_id, d.kind, d.provider, d.status, d.attempts, d.last_error,
       d.created_at, d.sent_at, d.acked_at, v.platform,
       left(encode(sha256(convert_to(coalesce(v.voip_token, v.token, ''), 'UTF8')), 'hex'), 8)
         as fingerprint,
       v.disabled_at
from public.push_deliveries d
left join public.push_devices v on v.id = d.device_id
where d.call_id = $1 order by d.id
"""

USER = "select id, email from auth.users where id = $1"
USER_BY_EMAIL = "select id from auth.users where lower(email) = lower($1) limit 1"

USER_CALLS = """
select id, caller_id, callee_id, status, end_reason, created_at, ended_at
from public.calls where caller_id = $1 or callee_id = $1
order by created_at desc limit $2
"""

LIVE_CALLS = """
select id, caller_id, callee_id, status, created_at, ring_deadline, accepted_at,
       extract(epoch from now() - created_at)::float8 as age
from public.calls where status <> 'ended'
order by created_at desc limit $1
"""

TIME_TO_RING = """
select d.provider, count(*) as rings,
       percentile_cont(0.5) within group (order by extract(epoch from d.sent_at - c.created_at))
         as p50,
       percentile_cont(0.95) within group (order by extract(epoch from d.sent_at - c.created_at))
         as p95
from public.push_deliveries d join public.calls c on c.id = d.call_id
where d.kind = 'ring' and d.sent_at > now() - interval '1 hour'
  and d.created_at > now() - interval '1 hour 5 minutes'  -- sent_at >= created_at: the index
group by d.provider order by d.provider
"""

# 'uncertain' is a sent row marked by the worker (see the contract's push outcomes).
PUSH_OUTCOMES = """
select provider, kind,
       case when status = 'sent' and last_error = 'uncertain' then 'uncertain' else status end
         as outcome,
       count(*) as n
from public.push_deliveries where created_at > now() - interval '1 hour'
group by 1, 2, 3 order by 1, 2, 3
"""

# The brake's window, as the database saw it: results and prune candidates per provider in
# the last 5 minutes (a candidate counted once per recipient, like the worker's brake).
BRAKE_WINDOW = """
select provider,
       count(*) filter (where status in ('sent', 'failed', 'pruned')) as results,
       count(distinct recipient_id) filter (
         where status = 'pruned' or last_error like '%(prune braked)') as candidates,
       count(*) filter (where last_error like '%(prune braked)') as braked
from public.push_deliveries where created_at > now() - interval '5 minutes'
group by provider order by provider
"""

QUEUE = """
select (select count(*) from public.push_deliveries where status = 'pending') as pending,
       (select extract(epoch from now() - min(created_at))::float8
          from public.push_deliveries where status = 'pending') as pending_oldest,
       (select count(*) from orchestrator.jobs where run_at <= now()) as jobs_due,
       (select extract(epoch from now() - min(run_at))::float8
          from orchestrator.jobs where run_at <= now()) as jobs_oldest
"""

# The same statement as `orchestrator call redrive`: one rule for both.
REDRIVE = operator_sql.REDRIVE

OPERATOR_AUDIT = """
insert into public.call_audit (call_id, actor_id, actor, event, detail)
values ($1, $2, 'operator', 'operator_action', $3::jsonb)
"""
