-- Call orchestrator, migration 2 of 4: the call state machine, enforced by the database.
-- SQLSTATEs (class CA): CA001 illegal transition, CA002 column set by the database or
-- immutable, CA003 call ended, CA004 ring deadline passed, CA005 bad initial status,
-- CA006 invalid participants, CA010 caller has an open call, CA011 caller is in a call,
-- CA012 per-minute call limit, CA020 append-only table. 42501 for writes by a non-participant.

-- The transition table. orchestrator/domain/transitions.py is the same table in Python and
-- tests/integration/test_transition_parity.py proves the two agree.
create function orchestrator.transition_allowed(
  p_actor text, p_from text, p_to text, p_reason text
) returns boolean
language sql immutable set search_path = ''
as $$
  select exists (
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
      ('system', 'accepted', 'ended', 'failed')
    ) as t (actor, from_status, to_status, end_reason)
    -- An operator acts with the system's powers (the audit names the operator).
    where t.actor = case when p_actor = 'operator' then 'system' else p_actor end
      and t.from_status = p_from
      and t.to_status = p_to
      and t.end_reason is not distinct from p_reason
  )
$$;

-- Who is writing: a client (anon/authenticated, as PostgREST or Realtime act) or the system
-- (any other role; an operator tool marks itself with the `orchestrator.operator` setting).
-- SECURITY INVOKER on purpose: only the invoker's current_user tells clients from the system.
create function orchestrator.writer() returns text
language sql stable set search_path = ''
as $$
  select case
    when current_user in ('anon', 'authenticated') then 'client'
    when coalesce(current_setting('orchestrator.operator', true), '') <> '' then 'operator'
    else 'system'
  end
$$;

-- Serialises decisions about one user (abuse limits at insert, glare/busy at pickup).
create function orchestrator.lock_user(p_user uuid) returns void
language sql volatile set search_path = ''
as $$
  select pg_catalog.pg_advisory_xact_lock(7337, pg_catalog.hashtext(p_user::text))
$$;

create function orchestrator.calls_before_insert() returns trigger
language plpgsql set search_path = ''
as $$
declare
  v_writer text := orchestrator.writer();
  v_uid uuid := auth.uid();
  v_settings orchestrator.settings;
begin
  select * into strict v_settings from orchestrator.settings;
  if new.status is distinct from 'ringing' then
    raise exception using errcode = 'CA005',
      message = format('a call must start as ringing, not %s', coalesce(new.status, 'null'));
  end if;
  if new.end_reason is not null or new.ended_by is not null or new.accepted_at is not null
     or new.ended_at is not null or new.created_at is not null or new.updated_at is not null
     or new.version is not null then
    raise exception using errcode = 'CA002',
      message = 'end_reason, ended_by, timestamps and version are set by the database';
  end if;
  if new.ring_deadline is not null and v_writer = 'client' then
    raise exception using errcode = 'CA002', message = 'ring_deadline is set by the database';
  end if;
  if new.caller_id is null or new.callee_id is null then
    raise exception using errcode = 'CA006', message = 'caller_id and callee_id are required';
  end if;
  if new.caller_id = new.callee_id then
    raise exception using errcode = 'CA006', message = 'a user cannot call themselves';
  end if;
  if v_writer = 'client' then
    if new.caller_id is distinct from v_uid then
      raise exception using errcode = '42501',
        message = 'caller_id must be the signed-in user';
    end if;
    perform orchestrator.lock_user(new.caller_id);
    if exists (select 1 from public.calls c
               where c.caller_id = new.caller_id and c.status <> 'ended') then
      raise exception using errcode = 'CA010',
        message = 'the caller already has a call that has not ended';
    end if;
    if exists (select 1 from public.calls c
               where c.status = 'accepted'
                 and (c.caller_id = new.caller_id or c.callee_id = new.caller_id)) then
      raise exception using errcode = 'CA011', message = 'the caller is in an accepted call';
    end if;
    if (select count(*) from public.calls c
        where c.caller_id = new.caller_id and c.created_at > now() - interval '1 minute')
       >= v_settings.calls_per_minute_per_caller then
      raise exception using errcode = 'CA012',
        message = format('at most %s calls per minute per caller',
                         v_settings.calls_per_minute_per_caller);
    end if;
  end if;
  new.created_at := now();
  new.updated_at := now();
  new.version := 1;
  new.ring_deadline := coalesce(
    new.ring_deadline, now() + make_interval(secs => v_settings.ring_timeout_seconds)
  );
  perform set_config('orchestrator.writer', v_writer, true);
  return new;
end
$$;

-- The only change allowed on an ended call: `on delete set null` of an erased user.
create function orchestrator.is_erasure(p_old public.calls, p_new public.calls) returns boolean
language sql stable set search_path = ''
as $$
  select (p_new.caller_id is distinct from p_old.caller_id
          or p_new.callee_id is distinct from p_old.callee_id
          or p_new.ended_by is distinct from p_old.ended_by)
    and (p_new.caller_id is not distinct from p_old.caller_id
         or (p_new.caller_id is null
             and not exists (select 1 from auth.users u where u.id = p_old.caller_id)))
    and (p_new.callee_id is not distinct from p_old.callee_id
         or (p_new.callee_id is null
             and not exists (select 1 from auth.users u where u.id = p_old.callee_id)))
    and (p_new.ended_by is not distinct from p_old.ended_by
         or (p_new.ended_by is null
             and not exists (select 1 from auth.users u where u.id = p_old.ended_by)))
    and (p_new.id, p_new.video, p_new.status, p_new.end_reason, p_new.created_at,
         p_new.ring_deadline, p_new.accepted_at, p_new.ended_at, p_new.updated_at,
         p_new.version)
        is not distinct from
        (p_old.id, p_old.video, p_old.status, p_old.end_reason, p_old.created_at,
         p_old.ring_deadline, p_old.accepted_at, p_old.ended_at, p_old.updated_at,
         p_old.version)
$$;

create function orchestrator.calls_before_update() returns trigger
language plpgsql set search_path = ''
as $$
declare
  v_writer text := orchestrator.writer();
  v_uid uuid := auth.uid();
  v_actor text;
  v_column text;
begin
  perform set_config('orchestrator.writer', v_writer, true);
  -- Only look for an erasure when a participant was set null: is_erasure reads auth.users,
  -- which service_role may not read on Supabase.
  if v_writer <> 'client'
     and ((new.caller_id is null and old.caller_id is not null)
          or (new.callee_id is null and old.callee_id is not null)
          or (new.ended_by is null and old.ended_by is not null))
     and orchestrator.is_erasure(old, new) then
    new.version := old.version + 1;
    new.updated_at := now();
    return new;
  end if;
  if old.status = 'ended' then
    raise exception using errcode = 'CA003',
      message = format('call %s has ended and can no longer change', old.id);
  end if;
  select c into v_column from (values
      ('id', new.id is distinct from old.id),
      ('caller_id', new.caller_id is distinct from old.caller_id),
      ('callee_id', new.callee_id is distinct from old.callee_id),
      ('video', new.video is distinct from old.video),
      ('ended_by', new.ended_by is distinct from old.ended_by),
      ('created_at', new.created_at is distinct from old.created_at),
      ('ring_deadline', new.ring_deadline is distinct from old.ring_deadline),
      ('accepted_at', new.accepted_at is distinct from old.accepted_at),
      ('ended_at', new.ended_at is distinct from old.ended_at),
      ('updated_at', new.updated_at is distinct from old.updated_at),
      ('version', new.version is distinct from old.version)
    ) as changed (c, yes)
  where yes limit 1;
  if v_column is not null then
    raise exception using errcode = 'CA002',
      message = format('%s cannot be changed (it is immutable or set by the database)', v_column);
  end if;
  if v_writer = 'client' then
    v_actor := case when v_uid = old.caller_id then 'caller'
                    when v_uid = old.callee_id then 'callee' end;
    if v_actor is null then
      raise exception using errcode = '42501', message = 'not a participant of this call';
    end if;
  else
    v_actor := v_writer;
  end if;
  if not orchestrator.transition_allowed(v_actor, old.status, new.status, new.end_reason) then
    raise exception using errcode = 'CA001',
      message = format('%s may not move a call from %s to %s%s', v_actor, old.status,
                       new.status, coalesce('/' || new.end_reason, ''));
  end if;
  if new.status = 'accepted' and now() >= old.ring_deadline then
    raise exception using errcode = 'CA004',
      message = 'the ring deadline has passed; the call can no longer be accepted';
  end if;
  new.version := old.version + 1;
  new.updated_at := now();
  if new.status = 'accepted' then
    new.accepted_at := now();
  elsif new.status = 'ended' then
    new.ended_at := now();
    new.ended_by := case when v_writer = 'client' then v_uid end;
  end if;
  return new;
end
$$;

create trigger calls_before_insert before insert on public.calls
  for each row execute function orchestrator.calls_before_insert();
create trigger calls_before_update before update on public.calls
  for each row execute function orchestrator.calls_before_update();
