"""SQL for jobs, timers and pickup. The database clock decides: every `now()` is in SQL."""


# Only the kinds this release knows ($4 or $5): during a rolling deploy an older worker must
# leave a newer release's jobs alone rather than claim (and drop) them.
def _claim(scope: str, kinds: str) -> str:
    return f"""
with due as (
  select id from orchestrator.jobs
  where {scope} run_at <= now() and (locked_until is null or locked_until < now())
    and kind = any({kinds}::text[])
  order by run_at limit $1 for update skip locked
)
update orchestrator.jobs j
set locked_until = now() + make_interval(secs => $2), locked_by = $3, attempts = j.attempts + 1
from due where j.id = due.id
returning j.id, j.call_id, j.kind, j.attempts
"""


CLAIM_JOBS = _claim("", "$4")
CLAIM_CALL_JOBS = _claim("call_id = $4 and", "$5")

FINISH_JOBS = "delete from orchestrator.jobs where id = any($1::bigint[])"

RETRY_JOB = """
update orchestrator.jobs
set locked_until = null, locked_by = null, last_error = $2,
    run_at = now() + make_interval(secs => $3)
where id = $1
"""

RELEASE_JOBS = """
update orchestrator.jobs set locked_until = null, locked_by = null, attempts = attempts - 1
where id = any($1::bigint[]) and locked_by = $2
"""

RENEW_JOBS = """
update orchestrator.jobs set locked_until = now() + make_interval(secs => $2)
where id = any($1::bigint[]) and locked_by = $3
"""

PARTICIPANTS = "select caller_id, callee_id from public.calls where id = $1"

LOCK_USERS = "select orchestrator.lock_user(u) from unnest($1::uuid[]) as u order by u"

# Read after the user locks are held (a new statement, so a new snapshot), row-locking the
# call so a concurrent client change waits for the decision.
PICKUP_FACTS = """
select c.id, c.status, c.created_at, c.caller_id, c.callee_id,
       c.ring_deadline <= now() as deadline_passed,
       o.id as opposite_id, o.created_at as opposite_created_at,
       exists (select 1 from public.calls a
               where a.status = 'accepted'
                 and (a.caller_id = c.callee_id or a.callee_id = c.callee_id)) as callee_busy,
       exists (select 1 from public.call_blocks b
               where b.blocker_id = c.callee_id and b.blocked_id = c.caller_id) as blocked,
       (select count(*) from public.push_devices d
        where d.user_id = c.callee_id and orchestrator.ring_capable(d)) as devices
from public.calls c
left join lateral (
  select x.id, x.created_at from public.calls x
  where x.caller_id = c.callee_id and x.callee_id = c.caller_id and x.id <> c.id
    and x.status = 'ringing' and x.ring_deadline > now()
    -- A block in either direction never merges a glare (abuse limits).
    and not exists (select 1 from public.call_blocks b
                    where (b.blocker_id = c.callee_id and b.blocked_id = c.caller_id)
                       or (b.blocker_id = c.caller_id and b.blocked_id = c.callee_id))
  order by x.created_at, x.id limit 1
) o on true
where c.id = $1
for update of c
"""

# $3: {"<call id>": detail} read by the audit trigger (orchestrator.audit_detail).
END_RINGING = """
update public.calls c set status = 'ended', end_reason = $2
from (select set_config('orchestrator.audit_detail', $3, true)) as cfg
where c.id = $1 and c.status = 'ringing'
  and ($2 <> 'missed' or c.ring_deadline <= now())
returning c.id
"""

ACCEPT_SURVIVOR = """
update public.calls c set status = 'accepted'
from (select set_config('orchestrator.audit_detail', $2, true)) as cfg
where c.id = $1 and c.status = 'ringing'
returning c.id
"""

END_CALL = """
with before as (select id, status from public.calls where id = $1 and status <> 'ended')
update public.calls c set status = 'ended', end_reason = $2
from before, (select set_config('orchestrator.audit_detail', $3, true)) as cfg
where c.id = before.id
returning c.id, before.status as from_status
"""

EXPIRE_RINGS = """
update public.calls c set status = 'ended', end_reason = 'missed'
where c.id = any($1::uuid[]) and c.status = 'ringing' and c.ring_deadline <= now()
returning c.id, extract(epoch from c.ended_at - c.ring_deadline)::float8 as lateness
"""

EXPIRE_ACCEPTED = """
update public.calls c set status = 'ended', end_reason = 'max_duration'
from orchestrator.jobs j
where j.id = any($1::bigint[]) and j.kind = 'max_duration' and c.id = j.call_id
  and c.status = 'accepted' and j.run_at <= now()
returning c.id, extract(epoch from c.ended_at - j.run_at)::float8 as lateness
"""

# Presence timers: the rule runs in SQL (migration 20261202000200); not-due timers are set again.
FIRE_PRESENCE = """
select call_id as id, end_reason, lateness, detail from orchestrator.presence_fire($1)
"""

# Jobs whose moment has not come (a deadline not reached yet) are kept and released.
DROP_SETTLED_TIMERS = """
delete from orchestrator.jobs j
where j.id = any($1::bigint[])
  and not exists (select 1 from public.calls c
                  where c.id = j.call_id and c.status in ('ringing', 'accepted')
                    and ((j.kind = 'ring_timeout' and c.status = 'ringing'
                          and c.ring_deadline > now())
                      or (j.kind = 'max_duration' and c.status = 'accepted'
                          and j.run_at > now())))
"""

RINGING_TO_USERS = """
select o.id, exists (select 1 from public.call_blocks b
                     where b.blocker_id = o.callee_id and b.blocked_id = o.caller_id) as blocked
from public.calls o
where o.status = 'ringing' and o.id <> $1 and o.callee_id = any($2::uuid[])
"""

# A blocked caller's call that is still ringing ends `unreachable`, never `busy`: busy would
# tell the blocked caller that the blocker is in a call. $2 / $3: details (busy / blocked).
END_BUSY_AFTER_ACCEPT = """
with o as (
  select o.id,
         exists (select 1 from public.call_blocks b
                 where b.blocker_id = o.callee_id and b.blocked_id = o.caller_id) as blocked
  from public.calls a join public.calls o
    on o.status = 'ringing' and o.id <> a.id and o.callee_id in (a.caller_id, a.callee_id)
  where a.id = $1 and a.status = 'accepted'
)
update public.calls c
set status = 'ended', end_reason = case when o.blocked then 'unreachable' else 'busy' end
from o, (select set_config('orchestrator.audit_detail', $2, true)) as cfg
where c.id = o.id and c.status = 'ringing'
returning c.id, c.end_reason
"""

SECONDS_UNTIL_DUE = """
select extract(epoch from least(
  (select min(run_at) from orchestrator.jobs where locked_until is null),
  (select min(locked_until) from orchestrator.jobs where locked_until is not null),
  (select min(next_attempt_at) from public.push_deliveries
   where status = 'pending' and locked_until is null),
  (select min(locked_until) from public.push_deliveries
   where status = 'pending' and locked_until is not null)
) - now())::float8
"""

QUEUE_STATS = """
select
  (select count(*) from orchestrator.jobs where run_at <= now())
  + (select count(*) from public.push_deliveries
     where status = 'pending' and next_attempt_at <= now()) as depth,
  coalesce(extract(epoch from now() - least(
    (select min(run_at) from orchestrator.jobs where run_at <= now()),
    (select min(next_attempt_at) from public.push_deliveries
     where status = 'pending' and next_attempt_at <= now())))::float8, 0) as age
"""
