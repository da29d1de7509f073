"""SQL for jobs, timers and pickup. The database clock decides: every `now()` is in SQL."""


# Only the kinds this release knows ($4 or $5): during a rolling deploy an older worker must
# leave a newer release's jobs alone rather than claim (and drop) them.
# The lease commits without waiting for its WAL flush (synchronous_commit off for this
# transaction only; issue 14). Other workers see it at once. Only a database crash can lose
# it, and that also ends the claiming worker's session, so the job just runs again. Every
# effect of a job is committed synchronously by the statements that do the work.
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
from due, (select set_config('synchronous_commit', 'off', true)) as cfg
where j.id = due.id
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

# Both users' locks, then the facts on a fresh snapshot, the call's row locked: one round trip
# (orchestrator.pickup_facts, migration 20261203000200).
PICKUP_FACTS = """
select f.id, f.status, f.created_at, f.caller_id, f.callee_id, f.deadline_passed,
       f.opposite_id, f.opposite_created_at, f.callee_busy, f.blocked, f.devices
from orchestrator.pickup_facts($1) as f
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

# Locks, every other call ringing to either participant ended (busy, or unreachable for a
# blocked caller), the job done: one round trip (migration 20261203000200). $3: the busy detail.
END_BUSY_AFTER_ACCEPT = """
select ended_id as id, ended_reason as end_reason, was_blocked as blocked
from orchestrator.end_busy_after_accept($1, $2, $3::jsonb)
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
