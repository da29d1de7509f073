-- Abuse limits (second release): no account can slow, spam or probe anyone else.
-- Expand-only. New here: the device cap (MAX_DEVICES_PER_USER) with eviction of the least
-- recently seen device, registration only through register_push_device, push token formats
-- (CHECK + SQLSTATE CA031 "invalid push token"), no `missed` push to a blocker, and
-- lock_user refusing a client that locks someone else's id.
-- Replaced in full: public.register_push_device, orchestrator.lock_user.

alter table orchestrator.settings
  add column max_devices_per_user integer not null default 10
    constraint settings_max_devices_range check (max_devices_per_user between 1 and 100);

-- Token formats, one definition for the CHECK, the RPC and the migration's clean-up.
-- APNs alert and VoIP tokens: 64–200 hex characters, stored lowercase. FCM registration
-- tokens: 32–4096 of [A-Za-z0-9_:-]. Anything else could end up inside an APNs :path or an
-- FCM body (`../`, CR/LF, `?`, spaces), so it never gets in.
create function orchestrator.push_token_ok(p_platform text, p_token text, p_voip text)
returns boolean
language sql immutable set search_path = ''
as $$
  select case p_platform
    when 'ios' then
      (p_token is null or p_token ~ '^[0-9a-f]{64,200}$')
      and (p_voip is null or p_voip ~ '^[0-9a-f]{64,200}$')
    when 'android' then
      -- (PostgreSQL regexes repeat at most 255 times: the length is checked apart.)
      p_token ~ '^[A-Za-z0-9_:-]+$' and length(p_token) between 32 and 4096 and p_voip is null
    else false
  end
$$;

-- Existing rows first: APNs tokens that are only upper-case hex are stored lowercase (unless
-- that collides with another row); every active row still out of format is disabled, never
-- deleted, so the history keeps its device ids.
do $$
declare
  v_lowered integer;
  v_disabled integer;
  v_evicted integer;
begin
  update public.push_devices d
  set token = case when d.token ~ '^[0-9A-Fa-f]{64,200}$' then lower(d.token) else d.token end,
      voip_token = case when d.voip_token ~ '^[0-9A-Fa-f]{64,200}$'
                        then lower(d.voip_token) else d.voip_token end
  where d.platform = 'ios'
    and (d.token ~ '[A-F]' or d.voip_token ~ '[A-F]')
    and not exists (select 1 from public.push_devices o
                    where o.id <> d.id
                      and (o.token in (lower(d.token), lower(d.voip_token))
                           or o.voip_token in (lower(d.token), lower(d.voip_token))));
  get diagnostics v_lowered = row_count;
  update public.push_devices d
  set disabled_at = now(), disabled_reason = 'invalid_token'
  where d.disabled_at is null
    and not coalesce(orchestrator.push_token_ok(d.platform, d.token, d.voip_token), false);
  get diagnostics v_disabled = row_count;
  -- Users already over the default cap keep their most recently seen devices.
  update public.push_devices d
  set disabled_at = now(), disabled_reason = 'device_limit'
  from (
    select o.id, row_number() over (
      partition by o.user_id order by o.last_seen_at desc, o.created_at desc, o.id desc) as n
    from public.push_devices o where o.disabled_at is null
  ) ranked
  where d.id = ranked.id and ranked.n > (select s.max_devices_per_user from orchestrator.settings s);
  get diagnostics v_evicted = row_count;
  raise notice 'push_devices: % lowercased, % disabled as invalid_token, % as device_limit',
    v_lowered, v_disabled, v_evicted;
end
$$;

-- Active devices must hold well-formed tokens (a disabled row keeps what it had).
alter table public.push_devices add constraint push_devices_token_format check (
  disabled_at is not null or orchestrator.push_token_ok(platform, token, voip_token)
);
create index push_devices_user_active_idx on public.push_devices (user_id, last_seen_at)
  where disabled_at is null;

-- Registration only through the RPC: clients keep SELECT and DELETE of their own rows.
revoke insert, update on public.push_devices from authenticated;
drop policy push_devices_insert on public.push_devices;
drop policy push_devices_update on public.push_devices;

-- The cap, for every writer (the RPC, the service role, an operator): after a device becomes
-- active for a user, the user's least recently seen other active devices beyond the cap are
-- disabled with disabled_reason = 'device_limit'. Serialised per user by lock_user, so two
-- concurrent registrations cannot both stay under the cap.
create function orchestrator.push_devices_enforce_cap() returns trigger
language plpgsql security definer set search_path = ''
as $$
declare
  v_cap integer;
begin
  if new.disabled_at is not null then
    return null;
  end if;
  perform pg_catalog.pg_advisory_xact_lock(7337, pg_catalog.hashtext(new.user_id::text));
  select s.max_devices_per_user into v_cap from orchestrator.settings s;
  update public.push_devices d
  set disabled_at = now(), disabled_reason = 'device_limit'
  where d.id in (
    select o.id from public.push_devices o
    where o.user_id = new.user_id and o.disabled_at is null and o.id <> new.id
    order by o.last_seen_at desc, o.created_at desc, o.id desc
    offset greatest(v_cap - 1, 0)
  );
  return null;
end
$$;

create trigger push_devices_cap after insert or update of user_id, disabled_at, last_seen_at
  on public.push_devices
  for each row execute function orchestrator.push_devices_enforce_cap();

-- A callee who blocked the caller never gets a `missed` push for that call, whenever and
-- however it ends (an insert-then-cancel within milliseconds included): the row is dropped
-- before it exists.
create function orchestrator.push_deliveries_skip_blocked() returns trigger
language plpgsql security definer set search_path = ''
as $$
begin
  if new.kind = 'missed' and exists (
    select 1 from public.calls c
    join public.call_blocks b on b.blocker_id = new.recipient_id and b.blocked_id = c.caller_id
    where c.id = new.call_id
  ) then
    return null;
  end if;
  return new;
end
$$;

create trigger push_deliveries_skip_blocked before insert on public.push_deliveries
  for each row execute function orchestrator.push_deliveries_skip_blocked();

-- A client may lock only its own id (the insert trigger locks the caller, who is the client);
-- the system locks anyone. SECURITY INVOKER on purpose: current_user tells the two apart.
create or replace function orchestrator.lock_user(p_user uuid) returns void
language plpgsql volatile set search_path = ''
as $$
begin
  if orchestrator.writer() = 'client' and p_user is distinct from auth.uid() then
    raise exception using errcode = '42501', message = 'a client may only lock its own id';
  end if;
  perform pg_catalog.pg_advisory_xact_lock(7337, pg_catalog.hashtext(p_user::text));
end
$$;

create or replace function public.register_push_device(
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
  v_token text := register_push_device.token;
  v_voip text := register_push_device.voip_token;
  v_id uuid;
  v_voip_holder uuid;
begin
  if v_uid is null then
    raise exception using errcode = '42501', message = 'sign in to register a device';
  end if;
  if platform is null or platform not in ('ios', 'android') then
    raise exception using errcode = '22023', message = 'platform must be ios or android';
  end if;
  if platform = 'android' and (v_token is null or v_voip is not null) then
    raise exception using errcode = '22023',
      message = 'an android device needs a token and no voip_token';
  end if;
  if platform = 'ios' and v_token is null and v_voip is null then
    raise exception using errcode = '22023', message = 'an ios device needs a token';
  end if;
  if platform = 'ios' then
    v_token := lower(v_token);
    v_voip := lower(v_voip);
  end if;
  if not orchestrator.push_token_ok(platform, v_token, v_voip) then
    -- The value is not echoed: tokens never appear in errors or logs.
    raise exception using errcode = 'CA031', message = 'invalid push token',
      hint = 'APNs tokens: 64-200 hexadecimal characters; FCM tokens: 32-4096 of A-Z a-z 0-9 _ : -';
  end if;
  if apns_environment is not null and apns_environment not in ('production', 'sandbox') then
    raise exception using errcode = '22023',
      message = 'apns_environment must be production or sandbox';
  end if;
  if length(app_id) > 256 then
    raise exception using errcode = '22023', message = 'app_id is at most 256 characters';
  end if;
  -- One registration of this user at a time (the cap trigger takes the same lock; taking it
  -- first keeps the lock order the same as a call's: advisory lock, then rows).
  perform pg_catalog.pg_advisory_xact_lock(7337, pg_catalog.hashtext(v_uid::text));
  -- A token another account registered before moves here: the phone changed hands.
  select d.id into v_id from public.push_devices d where d.token = v_token;
  select d.id into v_voip_holder from public.push_devices d where d.voip_token = v_voip;
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
    values (v_uid, register_push_device.platform, v_token, v_voip,
            register_push_device.app_id, register_push_device.apns_environment)
    returning d.id into v_id;
  else
    update public.push_devices d
    set user_id = v_uid, platform = register_push_device.platform,
        token = v_token, voip_token = v_voip,
        app_id = register_push_device.app_id,
        apns_environment = register_push_device.apns_environment,
        last_seen_at = now(), disabled_at = null, disabled_reason = null
    where d.id = v_id;
  end if;
  -- The cap trigger has evicted the least recently seen device if this one was over it.
  return v_id;
end
$$;

revoke all on function orchestrator.push_token_ok(text, text, text),
  orchestrator.push_devices_enforce_cap(), orchestrator.push_deliveries_skip_blocked()
  from public, anon, authenticated, service_role;
-- The CHECK calls the format function as the writing role: the worker may be service_role.
grant execute on function orchestrator.push_token_ok(text, text, text) to service_role;
