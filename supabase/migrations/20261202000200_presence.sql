-- Presence and connection_lost: an accepted call that its participants are no longer in ends
-- by itself. Presence comes from Agora Notifications (NCS, recorded by the token server) and/or
-- app heartbeats (public.call_heartbeat). A durable timer per accepted call (job kind
-- `presence`), computed here on the database clock, is moved by presence and cancelled with
-- the call (calls_after_change deletes every job of an ended call).

-- 1. Names: the end reason, the audit events, the job kind (constraints widened, not narrowed).
alter table public.calls drop constraint calls_end_reason_known;
alter table public.calls add constraint calls_end_reason_known check (end_reason in (
  'completed', 'declined', 'cancelled', 'missed', 'busy', 'unreachable', 'failed',
  'max_duration', 'glare', 'connection_lost'
)) not valid;
alter table public.calls validate constraint calls_end_reason_known;

alter table public.call_audit drop constraint call_audit_event_known;
alter table public.call_audit add constraint call_audit_event_known check (event in (
  'call_created', 'call_accepted', 'call_ended', 'push_sent', 'push_failed',
  'device_pruned', 'token_issued', 'operator_action', 'participant_joined', 'participant_left'
)) not valid;
alter table public.call_audit validate constraint call_audit_event_known;

alter table orchestrator.jobs drop constraint jobs_kind_known;
alter table orchestrator.jobs add constraint jobs_kind_known check (
  kind in ('pickup', 'ring_timeout', 'accepted', 'max_duration', 'presence')
) not valid;
alter table orchestrator.jobs validate constraint jobs_kind_known;

-- 2. The transition table, replaced in full: the system may end an accepted call
-- `connection_lost`, or `completed` when presence shows the user quit (detail.by = 'presence').
-- orchestrator/domain/transitions.py is the same table; test_transition_parity.py proves it.
create or replace function orchestrator.transition_allowed(
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
      ('system', 'accepted', 'ended', 'failed'),
      ('system', 'accepted', 'ended', 'completed'),
      ('system', 'accepted', 'ended', 'connection_lost')
    ) as t (actor, from_status, to_status, end_reason)
    -- An operator acts with the system's powers (the audit names the operator).
    where t.actor = case when p_actor = 'operator' then 'system' else p_actor end
      and t.from_status = p_from
      and t.to_status = p_to
      and t.end_reason is not distinct from p_reason
  )
$$;

-- 3. State. Settings apart from orchestrator.settings: written by `migrate`/worker start from
-- PRESENCE_SOURCE / PRESENCE_TIMEOUT_SECONDS when set (tests write shorter timeouts directly).
create table orchestrator.presence_settings (
  id boolean primary key default true check (id),
  source text not null default 'none'
    check (source in ('none', 'agora', 'heartbeat', 'agora,heartbeat')),
  timeout_seconds integer not null default 30 check (timeout_seconds between 1 and 300)
);
insert into orchestrator.presence_settings default values;

-- One row per (call, participant), updated in place: beats and events never touch
-- public.calls (no version bump, no Realtime traffic) and write no audit row per beat.
create table orchestrator.presence (
  call_id uuid not null references public.calls (id) on delete cascade,
  uid smallint not null check (uid in (1, 2)),  -- Agora uid: 1 = caller, 2 = callee
  agora_present boolean not null default false,
  agora_changed_at timestamptz,  -- database clock of the last applied join/leave
  agora_seq bigint,  -- latest applied clientSeq (older events are ignored)
  leave_reason integer,  -- reason of the last Agora leave (1 = the user quit)
  platform integer,
  beat_at timestamptz,  -- last recorded call_heartbeat
  primary key (call_id, uid)
);

-- Every NCS notice that concerned a call, once (NCS retries; the noticeId is unique).
create table orchestrator.ncs_notices (
  notice_id text primary key,
  received_at timestamptz not null default now(),
  call_id uuid not null references public.calls (id) on delete cascade,
  event_type integer not null,
  uid integer,
  client_seq bigint,
  outcome text not null,
  payload jsonb not null
);
create index ncs_notices_call_idx on orchestrator.ncs_notices (call_id);

-- 4. The rule, on the database clock. Per participant of an accepted call: when their absence
-- reaches the timeout (null: present over Agora, no deadline). Absence starts at the latest of
-- accepted_at, the last Agora leave (agora source) and the last beat (heartbeat source).
create function orchestrator.presence_due(p_call uuid)
returns table (uid smallint, due_at timestamptz, leave_reason integer, beat_at timestamptz,
               timeout_seconds integer)
language sql stable set search_path = ''
as $$
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
  from public.calls c
  cross join (select ps.source like '%agora%' as agora, ps.source like '%heartbeat%' as heartbeat,
                     ps.timeout_seconds, ps.source
              from orchestrator.presence_settings ps) s
  cross join (values (1::smallint), (2::smallint)) as u (uid)
  left join orchestrator.presence p on p.call_id = c.id and p.uid = u.uid
  where c.id = p_call and c.status = 'accepted' and s.source <> 'none'
$$;

-- Sets the call's presence timer from the current state. While both are present the timer
-- still exists (a re-check one timeout later), so a lost race can never leave a call without
-- one. Wakes the worker when the timer moves earlier (an NCS leave), never from its own work.
create function orchestrator.presence_reschedule(p_call uuid) returns void
language plpgsql set search_path = ''
as $$
declare
  v_due timestamptz;
  v_timeout integer;
  v_old timestamptz;
begin
  select min(d.due_at), min(d.timeout_seconds) into v_due, v_timeout
  from orchestrator.presence_due(p_call) d;
  if v_timeout is null then
    return;  -- not accepted, or presence is off
  end if;
  v_due := coalesce(v_due, now() + make_interval(secs => v_timeout));
  select j.run_at into v_old from orchestrator.jobs j
  where j.call_id = p_call and j.kind = 'presence';
  insert into orchestrator.jobs as j (call_id, kind, run_at)
  values (p_call, 'presence', v_due)
  on conflict (call_id, kind) do update set run_at = excluded.run_at
    where j.run_at is distinct from excluded.run_at;
  if v_old is not null and v_due < v_old then
    perform pg_notify('orchestrator_calls', p_call::text);
  end if;
end
$$;

-- The timer starts at accept (a new trigger; calls_after_change is left alone).
create function orchestrator.presence_on_accept() returns trigger
language plpgsql security definer set search_path = ''
as $$
begin
  perform orchestrator.presence_reschedule(new.id);
  return null;
end
$$;
create trigger calls_presence_on_accept after update on public.calls
  for each row when (new.status = 'accepted' and old.status = 'ringing')
  execute function orchestrator.presence_on_accept();

create function orchestrator.presence_audit(
  p_call uuid, p_event text, p_detail jsonb
) returns void
language sql set search_path = ''
as $$
  insert into public.call_audit (call_id, actor, event, detail)
  values (p_call, 'system', p_event, p_detail)
$$;

-- 5. The worker fires due presence timers: ends the call (`completed` with detail.by =
-- 'presence' when the absent participant's last Agora leave had reason 1, otherwise
-- `connection_lost`) or, when presence moved, sets the timer again and frees it.
create function orchestrator.presence_fire(p_jobs bigint[])
returns table (call_id uuid, end_reason text, lateness float8, detail jsonb)
language plpgsql set search_path = ''
as $$
#variable_conflict use_column
declare
  v_job record;
  v_due record;
  v_detail jsonb;
  v_reason text;
begin
  for v_job in
    select j.id, j.call_id from orchestrator.jobs j
    where j.id = any(p_jobs) and j.kind = 'presence' order by j.id
  loop
    select d.* into v_due from orchestrator.presence_due(v_job.call_id) d
    order by d.due_at nulls last, d.uid limit 1;
    if not found then  -- the call is no longer accepted, or presence was turned off
      delete from orchestrator.jobs j where j.id = v_job.id;
      continue;
    end if;
    if v_due.due_at is not null and v_due.due_at <= now() then
      v_reason := case when v_due.leave_reason = 1 then 'completed' else 'connection_lost' end;
      v_detail := jsonb_build_object('by', 'presence', 'uid', v_due.uid,
                                     'absent_seconds', v_due.timeout_seconds);
      if v_due.beat_at is not null
         and v_due.beat_at + make_interval(secs => v_due.timeout_seconds) = v_due.due_at then
        -- The beats stopped: that is the moment this participant's presence changed.
        perform orchestrator.presence_audit(v_job.call_id, 'participant_left',
          jsonb_build_object('uid', v_due.uid, 'source', 'heartbeat'));
      end if;
      perform set_config('orchestrator.audit_detail',
                         jsonb_build_object(v_job.call_id::text, v_detail)::text, true);
      update public.calls c set status = 'ended', end_reason = v_reason
      where c.id = v_job.call_id and c.status = 'accepted';
      if found then
        call_id := v_job.call_id;
        end_reason := v_reason;
        lateness := extract(epoch from now() - v_due.due_at)::float8;
        detail := v_detail;
        return next;
      end if;
    else
      update orchestrator.jobs j
      set run_at = coalesce(v_due.due_at, now() + make_interval(secs => v_due.timeout_seconds)),
          locked_until = null, locked_by = null, attempts = 0
      where j.id = v_job.id;
    end if;
  end loop;
end
$$;

-- 6. NCS notices (called by the token server after the signature check and parsing).
-- Outcomes: applied | recorded (stored, no presence change) | stale (older clientSeq) |
-- duplicate | unknown_call | call_ended; the last three record nothing.
create function orchestrator.record_ncs_notice(
  p_notice_id text, p_event_type integer, p_call uuid, p_uid integer, p_client_seq bigint,
  p_reason integer, p_platform integer, p_payload jsonb
) returns text
language plpgsql set search_path = ''
as $$
declare
  v_status text;
  v_row orchestrator.presence;
  v_outcome text := 'recorded';
  v_uid smallint;
begin
  select c.status into v_status from public.calls c where c.id = p_call;
  if v_status is null then
    return 'unknown_call';
  elsif v_status = 'ended' then
    return 'call_ended';
  end if;
  insert into orchestrator.ncs_notices
    (notice_id, call_id, event_type, uid, client_seq, outcome, payload)
  values (p_notice_id, p_call, p_event_type, p_uid, p_client_seq, 'recorded', p_payload)
  on conflict (notice_id) do nothing;
  if not found then
    return 'duplicate';
  end if;

  if p_event_type in (103, 105, 107, 104, 106, 108) then
    insert into orchestrator.presence (call_id, uid) values (p_call, p_uid)
    on conflict do nothing;
    select * into v_row from orchestrator.presence p
    where p.call_id = p_call and p.uid = p_uid for update;
    if p_client_seq is not null and v_row.agora_seq is not null
       and p_client_seq < v_row.agora_seq then
      v_outcome := 'stale';
    elsif p_event_type in (103, 105, 107) then
      update orchestrator.presence p
      set agora_present = true, agora_changed_at = now(), platform = p_platform,
          agora_seq = coalesce(p_client_seq, p.agora_seq)
      where p.call_id = p_call and p.uid = p_uid;
      if not v_row.agora_present then
        v_outcome := 'applied';
        perform orchestrator.presence_audit(p_call, 'participant_joined', jsonb_build_object(
          'uid', p_uid, 'source', 'agora', 'platform', p_platform));
      end if;
    else
      update orchestrator.presence p
      set agora_present = false, agora_changed_at = now(), leave_reason = p_reason,
          platform = coalesce(p_platform, p.platform),
          agora_seq = coalesce(p_client_seq, p.agora_seq)
      where p.call_id = p_call and p.uid = p_uid;
      v_outcome := 'applied';
      if v_row.agora_present then
        perform orchestrator.presence_audit(p_call, 'participant_left', jsonb_build_object(
          'uid', p_uid, 'source', 'agora', 'platform', coalesce(p_platform, v_row.platform),
          'reason', p_reason));
      end if;
    end if;
  elsif p_event_type = 102 then
    -- Channel destroyed: a leave of everyone still present.
    for v_uid in
      update orchestrator.presence p
      set agora_present = false, agora_changed_at = now(), leave_reason = p_reason
      where p.call_id = p_call and p.agora_present
      returning p.uid
    loop
      v_outcome := 'applied';
      perform orchestrator.presence_audit(p_call, 'participant_left', jsonb_build_object(
        'uid', v_uid, 'source', 'agora', 'reason', p_reason, 'event', 102));
    end loop;
  end if;

  if v_outcome <> 'recorded' then
    update orchestrator.ncs_notices n set outcome = v_outcome where n.notice_id = p_notice_id;
  end if;
  if v_outcome = 'applied' then
    perform orchestrator.presence_reschedule(p_call);
  end if;
  return v_outcome;
end
$$;

-- 7. Heartbeats from apps that do not enable NCS. Participant only (P0002 otherwise, like
-- call_ring_summary); writes only for an accepted call with heartbeats enabled, at most once
-- per participant per 2 s; never touches public.calls.
create function public.call_heartbeat(call_id uuid) returns jsonb
language plpgsql security definer set search_path = ''
as $$
#variable_conflict use_column
declare
  v_uid uuid := auth.uid();
  v_call public.calls;
  v_part smallint;
  v_settings orchestrator.presence_settings;
  v_prev timestamptz;
  v_found boolean;
begin
  select * into v_call from public.calls c where c.id = call_heartbeat.call_id;
  v_part := case when v_uid is null then null
                 when v_uid = v_call.caller_id then 1
                 when v_uid = v_call.callee_id then 2 end;
  if v_part is null then
    raise exception using errcode = 'P0002', message = 'call not found';
  end if;
  select * into strict v_settings from orchestrator.presence_settings;
  if v_call.status = 'accepted' and v_settings.source like '%heartbeat%' then
    select p.beat_at into v_prev from orchestrator.presence p
    where p.call_id = v_call.id and p.uid = v_part;
    v_found := found;
    if v_prev is null or v_prev <= now() - interval '2 seconds' then
      insert into orchestrator.presence as p (call_id, uid, beat_at)
      values (v_call.id, v_part, now())
      on conflict (call_id, uid) do update set beat_at = excluded.beat_at
        where p.beat_at is null or p.beat_at <= now() - interval '2 seconds';
      if found then
        if v_prev is null
           or v_prev <= now() - make_interval(secs => v_settings.timeout_seconds) then
          perform orchestrator.presence_audit(v_call.id, 'participant_joined',
            jsonb_build_object('uid', v_part, 'source', 'heartbeat'));
        end if;
        perform orchestrator.presence_reschedule(v_call.id);
      end if;
    end if;
  end if;
  return jsonb_build_object('status', v_call.status, 'end_reason', v_call.end_reason,
                            'version', v_call.version);
end
$$;

-- 8. Privileges: the worker/token server may connect as service_role; clients get the RPC only.
revoke all on function orchestrator.presence_due(uuid), orchestrator.presence_reschedule(uuid),
  orchestrator.presence_on_accept(), orchestrator.presence_audit(uuid, text, jsonb),
  orchestrator.presence_fire(bigint[]),
  orchestrator.record_ncs_notice(text, integer, uuid, integer, bigint, integer, integer, jsonb)
  from public, anon, authenticated;
revoke all on function orchestrator.presence_on_accept() from service_role;
grant execute on function orchestrator.presence_due(uuid), orchestrator.presence_reschedule(uuid),
  orchestrator.presence_audit(uuid, text, jsonb), orchestrator.presence_fire(bigint[]),
  orchestrator.record_ncs_notice(text, integer, uuid, integer, bigint, integer, integer, jsonb)
  to service_role;
revoke all on function public.call_heartbeat(uuid) from public, anon, authenticated, service_role;
grant execute on function public.call_heartbeat(uuid) to authenticated;
revoke all on orchestrator.presence, orchestrator.ncs_notices, orchestrator.presence_settings
  from public, anon, authenticated;
grant select, insert, update, delete on orchestrator.presence, orchestrator.ncs_notices
  to service_role;
grant select, update on orchestrator.presence_settings to service_role;
