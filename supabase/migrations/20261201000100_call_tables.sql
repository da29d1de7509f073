-- Call orchestrator, migration 1 of 4: tables and indexes.
-- Expand/contract rule for every later migration: add nullable or defaulted columns, new
-- tables and new functions first; remove anything only after no running worker uses it.

do $$
begin
  if to_regclass('public.calls') is not null then
    raise exception using
      errcode = 'CA100',
      message = 'public.calls already exists and was not created by the call-orchestrator '
        || 'migrations',
      hint = 'Rename or drop the existing table (for example the seed''s video-calls-schema.sql) '
        || 'before applying these migrations; they will not run over it.';
  end if;
end
$$;

-- Internal schema: never exposed through PostgREST, no grants to the client roles.
create schema if not exists orchestrator;
revoke all on schema orchestrator from public;

create table orchestrator.settings (
  id boolean primary key default true check (id),
  ring_timeout_seconds integer not null default 45 check (ring_timeout_seconds between 1 and 55),
  max_call_seconds integer not null default 14400 check (max_call_seconds > 0),
  calls_per_minute_per_caller integer not null default 10 check (calls_per_minute_per_caller > 0)
);
insert into orchestrator.settings default values;

create table public.calls (
  id uuid primary key default gen_random_uuid(),
  caller_id uuid default auth.uid() references auth.users (id) on delete set null,
  callee_id uuid references auth.users (id) on delete set null,
  video boolean not null default true,
  status text not null default 'ringing',
  end_reason text,
  ended_by uuid references auth.users (id) on delete set null,
  -- Set by the database only (the BEFORE triggers); no column defaults on purpose, so that a
  -- value supplied by a writer is visible to the trigger and refused instead of overwritten.
  created_at timestamptz not null,
  ring_deadline timestamptz not null,
  accepted_at timestamptz,
  ended_at timestamptz,
  updated_at timestamptz not null,
  version integer not null,
  constraint calls_status_known check (status in ('ringing', 'accepted', 'ended')),
  constraint calls_end_reason_known check (end_reason in (
    'completed', 'declined', 'cancelled', 'missed', 'busy', 'unreachable', 'failed',
    'max_duration', 'glare'
  )),
  constraint calls_not_self check (caller_id <> callee_id),
  constraint calls_end_reason_iff_ended check ((status = 'ended') = (end_reason is not null)),
  constraint calls_ended_at_iff_ended check ((status = 'ended') = (ended_at is not null)),
  constraint calls_accepted_at_iff_answered check (
    (status = 'accepted' and accepted_at is not null)
    or (status = 'ringing' and accepted_at is null)
    or status = 'ended'
  ),
  constraint calls_missed_after_deadline check (end_reason <> 'missed' or ended_at >= ring_deadline)
);
comment on table public.calls is
  'call-orchestrator: 1:1 calls; status and timestamps are owned by the database';

create index calls_caller_open_idx on public.calls (caller_id) where status <> 'ended';
create index calls_callee_open_idx on public.calls (callee_id) where status <> 'ended';
create index calls_caller_created_idx on public.calls (caller_id, created_at);
create index calls_callee_idx on public.calls (callee_id);
create index calls_ended_by_idx on public.calls (ended_by);
create index calls_ended_at_idx on public.calls (ended_at) where status = 'ended';

create table public.call_audit (
  id bigint generated always as identity primary key,
  call_id uuid not null references public.calls (id),
  occurred_at timestamptz not null default now(),
  -- No foreign key: the audit is append-only, so an erased user's id stays as an opaque id.
  actor_id uuid,
  actor text not null,
  event text not null,
  from_status text,
  to_status text,
  end_reason text,
  detail jsonb not null default '{}'::jsonb,
  -- The writing transaction, so the MQTT relay never skips rows that commit out of id order.
  txid xid8 not null default pg_current_xact_id(),
  constraint call_audit_actor_known check (actor in ('caller', 'callee', 'system', 'operator')),
  constraint call_audit_event_known check (event in (
    'call_created', 'call_accepted', 'call_ended', 'push_sent', 'push_failed',
    'device_pruned', 'token_issued', 'operator_action'
  ))
);
create index call_audit_call_idx on public.call_audit (call_id, id);
create index call_audit_actor_idx on public.call_audit (actor_id);

create table public.call_blocks (
  blocker_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  blocked_id uuid not null references auth.users (id) on delete cascade,
  created_at timestamptz not null default now(),
  primary key (blocker_id, blocked_id),
  constraint call_blocks_not_self check (blocker_id <> blocked_id)
);
create index call_blocks_blocked_idx on public.call_blocks (blocked_id);

create table public.push_devices (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  platform text not null,
  token text unique,
  voip_token text unique,
  apns_environment text,
  app_id text,
  created_at timestamptz not null default now(),
  last_seen_at timestamptz not null default now(),
  disabled_at timestamptz,
  disabled_reason text,
  constraint push_devices_platform_known check (platform in ('ios', 'android')),
  constraint push_devices_environment_known check (
    apns_environment in ('production', 'sandbox')
  ),
  constraint push_devices_has_token check (token is not null or voip_token is not null),
  constraint push_devices_voip_is_ios check (platform = 'ios' or voip_token is null),
  constraint push_devices_android_token check (platform = 'ios' or token is not null),
  constraint push_devices_token_length check (
    length(token) between 1 and 4096 and length(voip_token) between 1 and 4096
  ),
  constraint push_devices_app_id_length check (length(app_id) <= 256)
);
create index push_devices_user_idx on public.push_devices (user_id);

create table public.push_deliveries (
  id bigint generated always as identity primary key,
  call_id uuid not null references public.calls (id),
  device_id uuid references public.push_devices (id) on delete set null,
  kind text not null,
  provider text not null,
  status text not null default 'pending',
  attempts integer not null default 0,
  last_error text,
  created_at timestamptz not null default now(),
  sent_at timestamptz,
  acked_at timestamptz,
  -- Ours: who it is for (kept when the device row is deleted), the payload's stable parts,
  -- and the worker's lease.
  recipient_id uuid references auth.users (id) on delete set null,
  seq integer not null default 1,
  expires_at timestamptz,
  end_reason text,
  next_attempt_at timestamptz not null default now(),
  locked_until timestamptz,
  locked_by text,
  provider_message_id text,
  constraint push_deliveries_kind_known check (kind in ('ring', 'stop', 'missed')),
  constraint push_deliveries_provider_known check (provider in ('apns', 'fcm', 'log')),
  constraint push_deliveries_status_known check (
    status in ('pending', 'sent', 'failed', 'pruned')
  ),
  constraint push_deliveries_once unique (call_id, device_id, kind)
);
create index push_deliveries_due_idx on public.push_deliveries (next_attempt_at)
  where status = 'pending';
create index push_deliveries_device_idx on public.push_deliveries (device_id);
create index push_deliveries_recipient_idx on public.push_deliveries (recipient_id);

-- The worker's durable work: one row per pending step of a call, due at `run_at` (database
-- clock). Claimed with a short lease; a crashed worker's lease expires and another takes over.
create table orchestrator.jobs (
  id bigint generated always as identity primary key,
  call_id uuid not null references public.calls (id) on delete cascade,
  kind text not null,
  run_at timestamptz not null,
  locked_until timestamptz,
  locked_by text,
  attempts integer not null default 0,
  last_error text,
  created_at timestamptz not null default now(),
  constraint jobs_kind_known check (kind in ('pickup', 'ring_timeout', 'accepted', 'max_duration')),
  constraint jobs_once unique (call_id, kind)
);
create index jobs_run_at_idx on orchestrator.jobs (run_at);
create index jobs_free_run_at_idx on orchestrator.jobs (run_at) where locked_until is null;
create index jobs_lease_idx on orchestrator.jobs (locked_until) where locked_until is not null;
create index push_deliveries_free_due_idx on public.push_deliveries (next_attempt_at)
  where status = 'pending' and locked_until is null;
create index push_deliveries_lease_idx on public.push_deliveries (locked_until)
  where status = 'pending' and locked_until is not null;
