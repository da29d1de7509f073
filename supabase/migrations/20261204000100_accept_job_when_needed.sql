-- The `accepted` job (busy after accept: end every other call ringing to either participant)
-- only when there is such a call (issue 14). Before, every accept inserted the job, a worker
-- claimed it, took both users' locks and deleted it: three more statements, a job row
-- written three times and, with several workers, lock waits against the hang-up that deletes
-- the same row. Nearly every accept finds nothing to end.
--
-- Why the check cannot miss a call: it runs holding both participants' user locks, the locks a
-- pickup takes before it reads its facts (orchestrator.pickup_facts). A call ringing to either
-- participant either was picked up before, and is committed and seen here (the job is
-- written), or its pickup waits for this transaction and then finds its callee busy (the
-- pickup ends it `busy` itself).
--
-- The locks are only tried, never waited for: the accept already holds the call's row, and a
-- pickup takes the user locks first and the row after, so waiting here could deadlock with the
-- pickup of this very call. When a lock is taken (a pickup or another accept of these users is
-- running), the job is written as before. Under repeatable read or serializable the snapshot
-- predates the locks, so the job is always written there too. calls_after_change is otherwise
-- unchanged (migration 20261201000300).

-- True when the accept needs the `accepted` job: another call rings to either participant, or
-- that cannot be ruled out. Called by the security-definer trigger; clients may not call it (a
-- client may only lock its own id, orchestrator.lock_user).
create function orchestrator.others_ringing(p_call uuid, p_caller uuid, p_callee uuid)
returns boolean
language plpgsql volatile set search_path = ''
as $$
declare
  v_locked boolean;
begin
  if pg_catalog.current_setting('transaction_isolation') <> 'read committed' then
    return true;
  end if;
  select coalesce(bool_and(pg_catalog.pg_try_advisory_xact_lock(
           7337, pg_catalog.hashtext(u.id::text))), true)
  into v_locked
  from (select x.id from unnest(array[p_caller, p_callee]) as x (id)
        where x.id is not null order by x.id) as u;
  if not v_locked then
    return true;
  end if;
  return exists (
    select 1 from public.calls o
    where o.status = 'ringing' and o.id <> p_call and o.callee_id in (p_caller, p_callee)
  );
end
$$;

revoke all on function orchestrator.others_ringing(uuid, uuid, uuid)
  from public, anon, authenticated;

create or replace function orchestrator.calls_after_change() returns trigger
language plpgsql security definer set search_path = ''
as $$
declare
  v_writer text := coalesce(nullif(current_setting('orchestrator.writer', true), ''), 'system');
  v_uid uuid := auth.uid();
  v_actor text;
  v_actor_id uuid;
  v_detail jsonb := '{}'::jsonb;
  v_max_call integer;
begin
  if v_writer = 'client' then
    v_actor := case when v_uid = new.caller_id then 'caller' else 'callee' end;
    v_actor_id := v_uid;
  else
    v_actor := v_writer;
    v_detail := orchestrator.audit_detail(new.id);
    if v_writer = 'operator' then
      v_detail := v_detail || jsonb_build_object(
        'operator', current_setting('orchestrator.operator', true));
    end if;
  end if;

  if tg_op = 'INSERT' then
    insert into public.call_audit (call_id, actor_id, actor, event, to_status, detail)
    values (new.id, v_actor_id, v_actor, 'call_created', 'ringing', v_detail);
    insert into orchestrator.jobs (call_id, kind, run_at)
    values (new.id, 'pickup', now()), (new.id, 'ring_timeout', new.ring_deadline);
    return null;
  end if;

  if new.status = old.status then
    return null;  -- an erasure (participant set null): no status event
  end if;

  if new.status = 'accepted' then
    select s.max_call_seconds into v_max_call from orchestrator.settings s;
    insert into public.call_audit
      (call_id, actor_id, actor, event, from_status, to_status, detail)
    values (new.id, v_actor_id, v_actor, 'call_accepted', old.status, 'accepted', v_detail);
    delete from orchestrator.jobs j
    where j.call_id = new.id and j.kind in ('pickup', 'ring_timeout');
    insert into orchestrator.jobs (call_id, kind, run_at)
    values (new.id, 'max_duration', new.accepted_at + make_interval(secs => v_max_call))
    on conflict (call_id, kind) do nothing;
    if orchestrator.others_ringing(new.id, new.caller_id, new.callee_id) then
      insert into orchestrator.jobs (call_id, kind, run_at)
      values (new.id, 'accepted', now())
      on conflict (call_id, kind) do nothing;
    end if;
  else
    if new.end_reason = 'missed' and not v_detail ? 'rang' then
      v_detail := v_detail || jsonb_build_object('rang', exists (
        select 1 from public.push_deliveries d
        where d.call_id = new.id and d.kind = 'ring' and d.status = 'sent'));
    end if;
    insert into public.call_audit
      (call_id, actor_id, actor, event, from_status, to_status, end_reason, detail)
    values (new.id, v_actor_id, v_actor, 'call_ended', old.status, 'ended', new.end_reason,
            v_detail);
    delete from orchestrator.jobs j where j.call_id = new.id;
  end if;

  if old.status = 'ringing' then
    -- Stop the ringing on every Android device we tried to ring (the answering device
    -- ignores it). iOS gets no stop: a VoIP push must always report a call, so the app ends
    -- CallKit from its own Realtime connection.
    insert into public.push_deliveries
      (call_id, device_id, recipient_id, kind, provider, seq, expires_at, end_reason)
    select new.id, d.id, d.user_id, 'stop', 'fcm', new.version,
           now() + interval '60 seconds', new.end_reason
    from public.push_deliveries r
    join public.push_devices d on d.id = r.device_id
    where r.call_id = new.id and r.kind = 'ring' and r.status in ('pending', 'sent')
      and d.platform = 'android' and d.token is not null and d.disabled_at is null
    on conflict (call_id, device_id, kind) do nothing;
    update public.push_deliveries r
    set status = 'failed', last_error = 'call_ended'
    where r.call_id = new.id and r.kind = 'ring' and r.status = 'pending'
      and (r.locked_until is null or r.locked_until < now());
  end if;

  if new.status = 'ended' and new.end_reason in ('missed', 'cancelled') then
    insert into public.push_deliveries
      (call_id, device_id, recipient_id, kind, provider, seq, expires_at, end_reason)
    select new.id, d.id, d.user_id, 'missed',
           case d.platform when 'ios' then 'apns' else 'fcm' end,
           new.version, now() + interval '24 hours', new.end_reason
    from public.push_devices d
    where d.user_id = new.callee_id and d.disabled_at is null and d.token is not null
    on conflict (call_id, device_id, kind) do nothing;
  end if;
  return null;
end
$$;
