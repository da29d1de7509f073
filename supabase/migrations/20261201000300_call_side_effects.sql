-- Call orchestrator, migration 3 of 4: what every status change causes, in the same
-- transaction as the change (client changes included): the audit row, the worker's jobs,
-- and the stop / missed deliveries.

create function orchestrator.audit_detail(p_call uuid) returns jsonb
language sql stable set search_path = ''
as $$
  -- The worker passes per-call details in a transaction-local setting, keyed by call id
  -- ('*' for all rows of a statement). Honoured for system writes only.
  select coalesce(
    (nullif(current_setting('orchestrator.audit_detail', true), '')::jsonb) -> p_call::text,
    (nullif(current_setting('orchestrator.audit_detail', true), '')::jsonb) -> '*',
    '{}'::jsonb
  )
$$;

create function orchestrator.calls_after_change() returns trigger
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
    values (new.id, 'accepted', now()),
           (new.id, 'max_duration', new.accepted_at + make_interval(secs => v_max_call))
    on conflict (call_id, kind) do nothing;
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

create trigger calls_after_change after insert or update on public.calls
  for each row execute function orchestrator.calls_after_change();

-- Wake the worker for client writes only. The worker continues its own transitions
-- in-process: a NOTIFY inside its transactions would serialise every commit cluster-wide.
create function orchestrator.notify_client_change() returns trigger
language plpgsql set search_path = ''
as $$
declare
  v_row record;
begin
  if current_user in ('anon', 'authenticated') then
    -- Payload: the call id, and the end reason when a client ended it (for metrics).
    for v_row in select c.id, c.end_reason from changed c loop
      perform pg_notify('orchestrator_calls', concat_ws(' ', v_row.id, v_row.end_reason));
    end loop;
  end if;
  return null;
end
$$;

create trigger calls_notify_insert after insert on public.calls
  referencing new table as changed
  for each statement execute function orchestrator.notify_client_change();
create trigger calls_notify_update after update on public.calls
  referencing new table as changed
  for each statement execute function orchestrator.notify_client_change();

-- Append-only history. Only `orchestrator prune` (the table owner, with the
-- orchestrator.prune setting on) may delete old ended calls and their rows.
create function orchestrator.refuse_rewrite() returns trigger
language plpgsql set search_path = ''
as $$
begin
  if tg_op = 'DELETE'
     and current_setting('orchestrator.prune', true) = 'on'
     and pg_has_role(current_user,
                     (select c.relowner from pg_catalog.pg_class c where c.oid = tg_relid),
                     'MEMBER') then
    -- Prune removes ended calls only (checked apart: audit rows have no status).
    if tg_table_name <> 'calls' then
      return old;
    elsif to_jsonb(old) ->> 'status' = 'ended' then
      return old;
    end if;
  end if;
  raise exception using errcode = 'CA020',
    message = format('%s is append-only: %s is not allowed', tg_table_name, lower(tg_op));
end
$$;

create trigger call_audit_append_only before update or delete on public.call_audit
  for each row execute function orchestrator.refuse_rewrite();
create trigger call_audit_no_truncate before truncate on public.call_audit
  for each statement execute function orchestrator.refuse_rewrite();
create trigger calls_no_delete before delete on public.calls
  for each row execute function orchestrator.refuse_rewrite();
create trigger calls_no_truncate before truncate on public.calls
  for each statement execute function orchestrator.refuse_rewrite();
