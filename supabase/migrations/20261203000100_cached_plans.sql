-- Less database CPU per call (issue 14): the small rule functions that every call's triggers
-- and the worker's statements call are rewritten in PL/pgSQL, with the same signatures,
-- results, volatility and `search_path`.
--
-- Why: a `language sql` function with a SET clause (here `search_path = ''`, which the
-- security linter requires) is never inlined, and PostgreSQL (before 18) parses and plans its
-- body again on every call from a new statement. One lifecycle (insert, ring, accept, hang-up)
-- called these 13 times. PL/pgSQL keeps each statement's plan for the session, and evaluates
-- table-free expressions without the executor.
-- Expand-only: the functions are replaced in place. Their rules are unchanged, and the parity
-- and access-rule tests run against these definitions.

-- Who is writing (see 20261201000200). SECURITY INVOKER on purpose: current_user is the
-- invoker's role.
create or replace function orchestrator.writer() returns text
language plpgsql stable set search_path = ''
as $$
begin
  return case
    when current_user in ('anon', 'authenticated') then 'client'
    when coalesce(current_setting('orchestrator.operator', true), '') <> '' then 'operator'
    else 'system'
  end;
end
$$;

-- The transition table, as in 20261202000200. orchestrator/domain/transitions.py is the same
-- table; test_transition_parity.py proves it.
create or replace function orchestrator.transition_allowed(
  p_actor text, p_from text, p_to text, p_reason text
) returns boolean
language plpgsql immutable set search_path = ''
as $$
begin
  return exists (
    select 1
    from (values
      ('caller', 'ringing', 'ended', 'cancelled'),
      ('caller', 'accepted', 'ended', 'completed'),
      ('callee', 'ringing', 'accepted', null),
      ('callee', 'ringing', 'ended', 'declined'),
      ('callee', 'ringing', 'ended', 'busy'),
      ('callee', 'accepted', 'ended', 'completed'),
      ('system', 'ringing', 'ended', 'missed'),
      ('system', 'ringing', 'ended', 'busy'),
      ('system', 'ringing', 'ended', 'unreachable'),
      ('system', 'ringing', 'ended', 'failed'),
      ('system', 'ringing', 'ended', 'glare'),
      ('system', 'ringing', 'accepted', null),
      ('system', 'accepted', 'ended', 'max_duration'),
      ('system', 'accepted', 'ended', 'failed'),
      ('system', 'accepted', 'ended', 'completed'),
      ('system', 'accepted', 'ended', 'connection_lost')
    ) as t (actor, from_status, to_status, end_reason)
    -- An operator acts with the system's powers (the audit names the operator).
    where t.actor = case when p_actor = 'operator' then 'system' else p_actor end
      and t.from_status = p_from
      and t.to_status = p_to
      and t.end_reason is not distinct from p_reason
  );
end
$$;

-- Presence deadlines per participant, as in 20261202000200. Presence off (the default):
-- no rows, and the settings row is all that is read.
create or replace function orchestrator.presence_due(p_call uuid)
returns table (uid smallint, due_at timestamptz, leave_reason integer, beat_at timestamptz,
               timeout_seconds integer)
language plpgsql stable set search_path = ''
as $$
begin
  return query
  select u.uid,
         case when s.agora and coalesce(p.agora_present, false) then null
              else greatest(c.accepted_at,
                            case when s.agora then p.agora_changed_at end,
                            case when s.heartbeat then p.beat_at end)
                   + make_interval(secs => s.timeout_seconds)
         end,
         case when s.agora then p.leave_reason end,
         case when s.heartbeat then p.beat_at end,
         s.timeout_seconds
  from (select ps.source like '%agora%' as agora, ps.source like '%heartbeat%' as heartbeat,
               ps.timeout_seconds, ps.source
        from orchestrator.presence_settings ps
        where ps.source <> 'none') s
  cross join public.calls c
  cross join (values (1::smallint), (2::smallint)) as u (uid)
  left join orchestrator.presence p on p.call_id = c.id and p.uid = u.uid
  where c.id = p_call and c.status = 'accepted';
end
$$;

-- A device that can ring, as in 20261202000600.
create or replace function orchestrator.ring_capable(p_device public.push_devices)
returns boolean
language plpgsql stable parallel safe
set search_path = ''
as $$
begin
  return p_device.disabled_at is null
     and ((p_device.platform = 'ios' and p_device.voip_token is not null)
          or (p_device.platform = 'android' and p_device.token is not null));
end
$$;

-- Why a delivery must not be sent, as in 20261202000600.
create or replace function orchestrator.delivery_void_reason(
  p_kind text, p_expires_at timestamptz, p_call_status text, p_device public.push_devices
) returns text
language plpgsql stable parallel safe
set search_path = ''
as $$
begin
  return case
    when p_device.id is null then 'device_deleted'
    when p_device.disabled_at is not null then 'device_disabled'
    when p_kind = 'ring' and p_call_status is distinct from 'ringing' then 'call_ended'
    when p_expires_at <= now() then
      case when p_kind = 'ring' then 'deadline_passed' else 'expired' end
    when coalesce(case when p_device.platform = 'ios' and p_kind = 'ring'
                       then p_device.voip_token else p_device.token end, '') = ''
      then 'no_token'
  end;
end
$$;

-- The worker's per-call audit details (see 20261201000300), read by every system transition.
create or replace function orchestrator.audit_detail(p_call uuid) returns jsonb
language plpgsql stable set search_path = ''
as $$
declare
  v_all jsonb := nullif(current_setting('orchestrator.audit_detail', true), '')::jsonb;
begin
  return coalesce(v_all -> p_call::text, v_all -> '*', '{}'::jsonb);
end
$$;
