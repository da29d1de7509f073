-- Call orchestrator, migration 4 of 4: what clients may do. Grants first (Supabase's default
-- privileges grant ALL to the API roles), then one RLS policy per command, then the three
-- client RPCs, then Realtime.

revoke all on table public.calls, public.call_audit, public.call_blocks, public.push_devices,
  public.push_deliveries from public, anon, authenticated, service_role;
revoke all on all functions in schema orchestrator from public, anon, authenticated, service_role;
-- Identity inserts need no sequence grant; Supabase's defaults would let clients setval().
revoke all on all sequences in schema public from public, anon, authenticated, service_role;

-- Clients read the settings (ring timeout, rate limit) and the pure helpers from their own
-- SECURITY INVOKER triggers; nothing else in the internal schema.
grant usage on schema orchestrator to authenticated, service_role;
grant select on orchestrator.settings to authenticated, service_role;
grant execute on function orchestrator.transition_allowed(text, text, text, text),
  orchestrator.writer(), orchestrator.lock_user(uuid),
  orchestrator.is_erasure(public.calls, public.calls)
  to authenticated, service_role;

-- The worker may connect as service_role instead of the owner: it needs the work tables.
grant select, insert, update on public.calls to service_role;
grant select, insert on public.call_audit to service_role;
grant select, insert, update, delete on public.call_blocks, public.push_devices to service_role;
grant select, insert, update on public.push_deliveries to service_role;
grant select, insert, update, delete on orchestrator.jobs to service_role;
grant update on orchestrator.settings to service_role;

-- calls: insert a ringing call as yourself; change only status / end_reason (the trigger
-- decides which changes are legal); read your own calls. No delete.
grant select on public.calls to authenticated;
grant insert (id, caller_id, callee_id, video, status) on public.calls to authenticated;
grant update (status, end_reason) on public.calls to authenticated;
alter table public.calls enable row level security;
alter table public.calls replica identity default;  -- on purpose: see README "Realtime"
create policy calls_select on public.calls for select to authenticated
  using ((select auth.uid()) in (caller_id, callee_id));
create policy calls_insert on public.calls for insert to authenticated
  with check (caller_id = (select auth.uid()));
create policy calls_update on public.calls for update to authenticated
  using ((select auth.uid()) in (caller_id, callee_id))
  with check ((select auth.uid()) in (caller_id, callee_id));

-- call_audit: participants read their calls' status events and their own token_issued;
-- device events only the callee. `detail` is never readable by a client (blocks live there).
grant select (id, call_id, occurred_at, actor_id, actor, event, from_status, to_status,
  end_reason) on public.call_audit to authenticated;
alter table public.call_audit enable row level security;
create policy call_audit_select on public.call_audit for select to authenticated
  using (exists (
    select 1 from public.calls c
    where c.id = call_audit.call_id
      and (
        (event in ('call_created', 'call_accepted', 'call_ended')
         and (select auth.uid()) in (c.caller_id, c.callee_id))
        or (event = 'token_issued' and actor_id = (select auth.uid()))
        or (event in ('push_sent', 'push_failed', 'device_pruned')
            and c.callee_id = (select auth.uid()))
      )
  ));

-- call_blocks: managed by the blocker only; the blocked user cannot see it.
grant select, delete on public.call_blocks to authenticated;
grant insert (blocker_id, blocked_id) on public.call_blocks to authenticated;
alter table public.call_blocks enable row level security;
create policy call_blocks_select on public.call_blocks for select to authenticated
  using (blocker_id = (select auth.uid()));
create policy call_blocks_insert on public.call_blocks for insert to authenticated
  with check (blocker_id = (select auth.uid()));
create policy call_blocks_delete on public.call_blocks for delete to authenticated
  using (blocker_id = (select auth.uid()));

-- push_devices: your own devices only; disabling is the server's call.
grant select, delete on public.push_devices to authenticated;
grant insert (user_id, platform, token, voip_token, apns_environment, app_id)
  on public.push_devices to authenticated;
grant update (token, voip_token, apns_environment, app_id, last_seen_at)
  on public.push_devices to authenticated;
alter table public.push_devices enable row level security;
create policy push_devices_select on public.push_devices for select to authenticated
  using (user_id = (select auth.uid()));
create policy push_devices_insert on public.push_devices for insert to authenticated
  with check (user_id = (select auth.uid()));
create policy push_devices_update on public.push_devices for update to authenticated
  using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));
create policy push_devices_delete on public.push_devices for delete to authenticated
  using (user_id = (select auth.uid()));

-- push_deliveries: the callee reads their own rows; the caller only gets call_ring_summary.
grant select (id, call_id, device_id, kind, provider, status, attempts, last_error, created_at,
  sent_at, acked_at) on public.push_deliveries to authenticated;
alter table public.push_deliveries enable row level security;
create policy push_deliveries_select on public.push_deliveries for select to authenticated
  using (recipient_id = (select auth.uid()));

create function public.register_push_device(
  platform text,
  token text,
  voip_token text default null,
  app_id text default null,
  apns_environment text default null
) returns uuid
language plpgsql security definer set search_path = ''
as $$
declare
  v_uid uuid := auth.uid();
  v_id uuid;
  v_voip_holder uuid;
begin
  if v_uid is null then
    raise exception using errcode = '42501', message = 'sign in to register a device';
  end if;
  if platform is null or platform not in ('ios', 'android') then
    raise exception using errcode = '22023', message = 'platform must be ios or android';
  end if;
  if platform = 'android' and (token is null or voip_token is not null) then
    raise exception using errcode = '22023',
      message = 'an android device needs a token and no voip_token';
  end if;
  if platform = 'ios' and token is null and voip_token is null then
    raise exception using errcode = '22023', message = 'an ios device needs a token';
  end if;
  -- A token another account registered before moves here: the phone changed hands.
  select d.id into v_id from public.push_devices d where d.token = register_push_device.token;
  select d.id into v_voip_holder from public.push_devices d
  where d.voip_token = register_push_device.voip_token;
  if v_id is null then
    v_id := v_voip_holder;
  elsif v_voip_holder is not null and v_voip_holder <> v_id then
    -- A VoIP-only device row disappears; one that also has an alert token keeps it.
    delete from public.push_devices d where d.id = v_voip_holder and d.token is null;
    update public.push_devices d set voip_token = null where d.id = v_voip_holder;
  end if;
  if v_id is null then
    insert into public.push_devices as d
      (user_id, platform, token, voip_token, app_id, apns_environment)
    values (v_uid, register_push_device.platform, register_push_device.token,
            register_push_device.voip_token, register_push_device.app_id,
            register_push_device.apns_environment)
    returning d.id into v_id;
  else
    update public.push_devices d
    set user_id = v_uid, platform = register_push_device.platform,
        token = register_push_device.token, voip_token = register_push_device.voip_token,
        app_id = register_push_device.app_id,
        apns_environment = register_push_device.apns_environment,
        last_seen_at = now(), disabled_at = null, disabled_reason = null
    where d.id = v_id;
  end if;
  return v_id;
end
$$;

create function public.call_ring_summary(call_id uuid) returns jsonb
language plpgsql stable security definer set search_path = ''
as $$
declare
  v_uid uuid := auth.uid();
  v_summary jsonb;
begin
  if v_uid is null or not exists (
    select 1 from public.calls c
    where c.id = call_ring_summary.call_id and v_uid in (c.caller_id, c.callee_id)
  ) then
    -- Unknown and not-yours look the same: no existence leak.
    raise exception using errcode = 'P0002', message = 'call not found';
  end if;
  select jsonb_build_object(
    'devices', count(*),
    'sent', count(*) filter (where d.status = 'sent'),
    'acked', count(*) filter (where d.acked_at is not null),
    'failed', count(*) filter (where d.status in ('failed', 'pruned'))
  ) into v_summary
  from public.push_deliveries d
  where d.call_id = call_ring_summary.call_id and d.kind = 'ring';
  return v_summary;
end
$$;

create function public.ack_ring(call_id uuid, device_id uuid) returns boolean
language plpgsql security definer set search_path = ''
as $$
declare
  v_uid uuid := auth.uid();
begin
  if v_uid is null then
    raise exception using errcode = '42501', message = 'sign in to acknowledge a ring';
  end if;
  update public.push_deliveries d
  set acked_at = coalesce(d.acked_at, now())
  where d.call_id = ack_ring.call_id and d.device_id = ack_ring.device_id
    and d.kind = 'ring' and d.recipient_id = v_uid;
  return found;
end
$$;

revoke all on function public.register_push_device(text, text, text, text, text),
  public.call_ring_summary(uuid), public.ack_ring(uuid, uuid)
  from public, anon, authenticated, service_role;
grant execute on function public.register_push_device(text, text, text, text, text),
  public.call_ring_summary(uuid), public.ack_ring(uuid, uuid) to authenticated;

-- Realtime: calls in the supabase_realtime publication (the Supabase CLI and Dashboard
-- create it; ALTER PUBLICATION ... ADD TABLE has no IF NOT EXISTS, hence the guard).
do $$
begin
  if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    raise notice 'publication supabase_realtime does not exist; Realtime will not see calls';
  elsif not exists (
    select 1 from pg_publication p where p.pubname = 'supabase_realtime' and p.puballtables
  ) and not exists (
    select 1 from pg_publication_tables t
    where t.pubname = 'supabase_realtime' and t.schemaname = 'public' and t.tablename = 'calls'
  ) then
    alter publication supabase_realtime add table public.calls;
  end if;
end
$$;
