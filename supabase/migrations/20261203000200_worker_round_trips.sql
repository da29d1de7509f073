-- Fewer worker round trips per call (issue 14). Each round trip costs the database a wake-up,
-- a receive and a send; that was about half of its CPU per lifecycle. Before this migration,
-- a pickup took 7 round trips and the `accepted` job took 7 too. These functions put steps that
-- must run one after another (user locks first, then a fresh snapshot) into one call.
-- They are new functions; nothing existing is replaced.

-- Locks a call's participants, in uuid order as orchestrator.lock_user callers must (no
-- deadlock between two pickups), and returns them. An erased participant (null) is skipped.
create function orchestrator.lock_participants(p_call uuid) returns uuid[]
language plpgsql volatile set search_path = ''
as $$
declare
  v_users uuid[];
begin
  select array_agg(u.id order by u.id) into v_users
  from public.calls c
  cross join lateral unnest(array[c.caller_id, c.callee_id]) as u (id)
  where c.id = p_call and u.id is not null;
  perform orchestrator.lock_user(u.id) from unnest(v_users) as u (id) order by u.id;
  return coalesce(v_users, '{}'::uuid[]);
end
$$;

-- What the pickup decides on (orchestrator/domain/pickup.py), read after both users' locks are
-- held. Plain PL/pgSQL runs each statement with a new snapshot, so the facts include every
-- call that committed while this one waited for the locks. The call's row is locked too, so a
-- concurrent client change waits for the decision. No row: the call is gone.
create function orchestrator.pickup_facts(p_call uuid)
returns table (id uuid, status text, created_at timestamptz, caller_id uuid, callee_id uuid,
               deadline_passed boolean, opposite_id uuid, opposite_created_at timestamptz,
               callee_busy boolean, blocked boolean, devices bigint)
language plpgsql volatile set search_path = ''
as $$
#variable_conflict use_column
begin
  perform orchestrator.lock_participants(p_call);
  return query
  select c.id, c.status, c.created_at, c.caller_id, c.callee_id,
         c.ring_deadline <= now(),
         o.id, o.created_at,
         exists (select 1 from public.calls a
                 where a.status = 'accepted'
                   and (a.caller_id = c.callee_id or a.callee_id = c.callee_id)),
         exists (select 1 from public.call_blocks b
                 where b.blocker_id = c.callee_id and b.blocked_id = c.caller_id),
         (select count(*) from public.push_devices d
          where d.user_id = c.callee_id and orchestrator.ring_capable(d))
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
  where c.id = p_call
  for update of c;
end
$$;

-- The `accepted` job in one call: both participants' locks, then every other call still
-- ringing to either of them ends, then the job is done. A blocked caller's call ends
-- `unreachable`, never `busy`: busy would tell the blocked caller that the blocker is in a
-- call. The audit details are `p_busy`, or {"reason": "blocked"} for a blocked caller's call.
create function orchestrator.end_busy_after_accept(p_call uuid, p_job bigint, p_busy jsonb)
returns table (ended_id uuid, ended_reason text, was_blocked boolean)
language plpgsql volatile set search_path = ''
as $$
begin
  perform orchestrator.lock_participants(p_call);
  delete from orchestrator.jobs j where j.id = p_job;
  return query
  with o as (
    select o.id,
           exists (select 1 from public.call_blocks b
                   where b.blocker_id = o.callee_id and b.blocked_id = o.caller_id) as blocked
    from public.calls a join public.calls o
      on o.status = 'ringing' and o.id <> a.id and o.callee_id in (a.caller_id, a.callee_id)
    where a.id = p_call and a.status = 'accepted'
  ), cfg as (
    select set_config('orchestrator.audit_detail', (
             jsonb_build_object('*', p_busy)
             || coalesce(jsonb_object_agg(o.id::text, case when o.blocked
                                                           then '{"reason": "blocked"}'::jsonb
                                                           else p_busy end), '{}'::jsonb)
           )::text, true) as detail
    from o
  )
  update public.calls c
  set status = 'ended', end_reason = case when o.blocked then 'unreachable' else 'busy' end
  from o, cfg
  where c.id = o.id and c.status = 'ringing'
  returning c.id, c.end_reason, o.blocked;
end
$$;

revoke all on function orchestrator.lock_participants(uuid), orchestrator.pickup_facts(uuid),
  orchestrator.end_busy_after_accept(uuid, bigint, jsonb)
  from public, anon, authenticated;
grant execute on function orchestrator.lock_participants(uuid), orchestrator.pickup_facts(uuid),
  orchestrator.end_busy_after_accept(uuid, bigint, jsonb)
  to service_role;
