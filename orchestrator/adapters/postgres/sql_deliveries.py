"""SQL for the push_deliveries ledger: claim with a lease, send, record once."""

# What the sender needs about a claimed delivery; `x` is the claimed rows. $1 = caller-name key.
# The caller's metadata is read once per call of the batch, not once per row (`names`): a
# call's 10 deliveries would otherwise detoast the same JSON 10 times. The name is cleaned in
# Python (orchestrator.domain.names); 4096 characters are plenty for 64 clean ones.
_DELIVERY_VIEW = """
, names as materialized (
  select c.id as call_id, left(u.raw_user_meta_data ->> $1::text, 4096) as caller_name
  from (select distinct call_id from x) k
  join public.calls c on c.id = k.call_id
  join auth.users u on u.id = c.caller_id
)
select x.id, x.call_id, x.kind, x.seq, x.expires_at, x.end_reason, x.attempts, x.provider,
       x.last_error,
       x.recipient_id, c.caller_id, c.video, c.status as call_status, n.caller_name,
       d.platform, d.token, d.voip_token, d.apns_environment,
       orchestrator.delivery_void_reason(x.kind, x.expires_at, c.status, d) as void_reason,
       extract(epoch from x.expires_at - now())::float8 as remaining,
       extract(epoch from now() - c.created_at)::float8 as created_age
from x
join public.calls c on c.id = x.call_id
left join public.push_devices d on d.id = x.device_id
left join names n on n.call_id = x.call_id
"""

_LEASE = "locked_until = now() + make_interval(secs => $2), locked_by = $3"


def _claim(scope: str) -> str:
    """Lease due pending deliveries ($4 at most), of every call or of one ($5).

    Fair across calls (abuse limits): each call's due rows are ranked (rings first, then the
    oldest), and a batch takes every call's first row before any call's second, so one call's
    fan-out never fills a batch that another call's ring is waiting for."""
    return f"""
with ranked as (
  select id, kind, next_attempt_at,
         row_number() over (partition by call_id
                            order by kind <> 'ring', next_attempt_at, id) as n
  from public.push_deliveries
  where {scope} status = 'pending' and next_attempt_at <= now()
    and (locked_until is null or locked_until < now())
), due as (
  select p.id from public.push_deliveries p join ranked r on r.id = p.id
  where p.status = 'pending' and (p.locked_until is null or p.locked_until < now())
  order by r.n, r.kind <> 'ring', r.next_attempt_at, r.id
  limit $4 for update of p skip locked
), x as (
  update public.push_deliveries p set {_LEASE}, attempts = p.attempts + 1
  from due where p.id = due.id returning p.*
)
{_DELIVERY_VIEW}
"""


CLAIM = _claim("")
CLAIM_FOR_CALL = _claim("call_id = $5 and")

# Ring every ring-capable device of the callee; the rows are born leased to this worker. The
# pickup job ($5) is deleted in the same statement (one round trip fewer).
CREATE_RINGS = f"""
with done as (delete from orchestrator.jobs j where j.id = $5), x as (
  insert into public.push_deliveries as p
    (call_id, device_id, recipient_id, kind, provider, seq, expires_at, attempts,
     locked_until, locked_by)
  select c.id, d.id, d.user_id, 'ring',
         case d.platform when 'ios' then 'apns' else 'fcm' end,
         c.version, c.ring_deadline, 1, now() + make_interval(secs => $2), $3
  from public.calls c
  join public.push_devices d on d.user_id = c.callee_id and orchestrator.ring_capable(d)
  where c.id = $4
  on conflict (call_id, device_id, kind) do nothing
  returning p.*
)
{_DELIVERY_VIEW}
"""

# One statement records a batch: delivery status, pruned devices, and the audit events.
# A row the call's end already settled (ring → failed/call_ended) keeps that status unless
# the provider took it, because a ring that went out must be recorded as sent.
RECORD = """
with r as (
  select * from unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                       $6::float8[]) as r (id, outcome, error, message_id, provider, retry_in)
), u as (
  update public.push_deliveries d set
    status = case when r.outcome = 'sent' then 'sent'
                  when d.status <> 'pending' then d.status
                  when r.outcome = 'retry' then 'pending'
                  else r.outcome end,
    last_error = case when r.outcome = 'sent' then r.error  -- null, or 'uncertain'
                      when d.status <> 'pending' then d.last_error
                      else r.error end,
    provider = r.provider,
    provider_message_id = coalesce(r.message_id, d.provider_message_id),
    sent_at = case when r.outcome = 'sent' then now() else d.sent_at end,
    next_attempt_at = case when r.outcome = 'retry'
                           then now() + make_interval(secs => r.retry_in)
                           else d.next_attempt_at end,
    locked_until = null, locked_by = null
  from r where d.id = r.id
  returning d.id, d.call_id, d.device_id, d.kind, d.status, d.provider, d.last_error,
            d.attempts, r.outcome
), pruned as (
  update public.push_devices v set disabled_at = now(), disabled_reason = u.last_error
  from u where u.status = 'pruned' and v.id = u.device_id and v.disabled_at is null
  returning v.id, u.call_id, u.provider, u.last_error
), audit as (
  insert into public.call_audit (call_id, actor, event, detail)
  select u.call_id, 'system',
         case when u.status = 'sent' then 'push_sent' else 'push_failed' end,
         jsonb_strip_nulls(jsonb_build_object(
           'delivery_id', u.id, 'device_id', u.device_id, 'kind', u.kind,
           'provider', u.provider, 'attempts', u.attempts, 'error', u.last_error))
  from u where u.outcome <> 'retry'
  union all
  select p.call_id, 'system', 'device_pruned',
         jsonb_build_object('device_id', p.id, 'provider', p.provider, 'reason', p.last_error)
  from pruned p
  returning 1
)
select u.call_id, u.kind, u.status, u.outcome,
       case when u.kind = 'ring' and u.status = 'sent'
            then extract(epoch from now() - c.created_at)::float8 end as ring_latency
from u join public.calls c on c.id = u.call_id
"""

# Every ring of a call failed before its deadline: the callee is unreachable.
END_UNREACHABLE = """
update public.calls c set status = 'ended', end_reason = 'unreachable'
from (select set_config('orchestrator.audit_detail',
                        '{"*": {"reason": "delivery_failed"}}', true)) as cfg
where c.id = any($1::uuid[]) and c.status = 'ringing' and c.ring_deadline > now()
  and not exists (select 1 from public.push_deliveries d
                  where d.call_id = c.id and d.kind = 'ring'
                    and d.status in ('pending', 'sent'))
returning c.id
"""

RELEASE = """
update public.push_deliveries set locked_until = null, locked_by = null,
  attempts = attempts - 1
where id = any($1::bigint[]) and locked_by = $2 and status = 'pending'
"""

RENEW = """
update public.push_deliveries set locked_until = now() + make_interval(secs => $2)
where id = any($1::bigint[]) and locked_by = $3 and status = 'pending'
"""

# After the quarantine: the device goes (with its audit), or stays because the brake is on.
SETTLE_PRUNES = """
with p as (
  update public.push_deliveries d set status = 'pruned'
  where d.id = any($1::bigint[]) and d.status = 'failed'
  returning d.id, d.call_id, d.device_id, d.provider, d.last_error
), v as (
  update public.push_devices v set disabled_at = now(), disabled_reason = p.last_error
  from p where v.id = p.device_id and v.disabled_at is null
  returning v.id, p.call_id, p.provider, p.last_error
), a as (
  insert into public.call_audit (call_id, actor, event, detail)
  select v.call_id, 'system', 'device_pruned',
         jsonb_build_object('device_id', v.id, 'provider', v.provider, 'reason', v.last_error)
  from v
  returning 1
)
update public.push_deliveries d set last_error = d.last_error || ' (prune braked)'
where d.id = any($2::bigint[]) and d.status = 'failed'
"""
