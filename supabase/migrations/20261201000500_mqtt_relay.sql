-- Call orchestrator, migration 5: what the MQTT relay needs (expand-only: one new internal
-- table, one nullable column, one trigger, one index; nothing existing changes meaning).
--
-- The relay publishes call_audit rows in the order their transactions became visible.
-- Audit ids are taken at insert but commit out of order, so a cursor on `id > last` would
-- skip a row whose transaction commits after a later id was published. The cursor is
-- therefore a pg_snapshot (the PgQ design): a window is every row whose `txid` is visible
-- in the window's snapshot but not in the snapshot of the previous window. Rows of a
-- transaction still running at a snapshot are in its xip list, so they fall into a later
-- window when they commit: nothing is skipped, whatever the commit order, and a long
-- transaction elsewhere on the cluster never holds the relay back.

-- One row per relay ('mqtt'). Only the relay holding the session advisory lock writes it,
-- and only after the broker acknowledged (PUBACK) every message of the rows it covers.
--   done_snapshot   every row visible in it has been published
--   window_snapshot the window being paged through (null between windows)
--   window_last_id  rows of that window with id <= this have been published (ids ascend)
create table orchestrator.relay_cursor (
  name text primary key,
  done_snapshot pg_snapshot not null,
  window_snapshot pg_snapshot,
  window_last_id bigint not null default 0,
  updated_at timestamptz not null default now(),
  updated_by text
);
comment on table orchestrator.relay_cursor is
  'call-orchestrator: how far the MQTT relay has published call_audit (snapshot cursor)';

-- Seeded with this migration's snapshot: audit rows that already exist count as published
-- (no flood of old history when the migration reaches an existing database); every later
-- row is published once a relay runs. To skip a backlog on purpose, set done_snapshot to
-- pg_current_snapshot() and window_snapshot to null.
insert into orchestrator.relay_cursor (name, done_snapshot) values ('mqtt', pg_current_snapshot());

-- The windows are range scans on txid (rows at or after the previous snapshot's xmax) plus
-- point lookups of its in-progress xids.
create index call_audit_txid_idx on public.call_audit (txid);

-- A status event carries "the call's values after the event": the version is not in the
-- row, and cannot be derived later (an erasure bumps the version without an event). The
-- trigger records the call's version at insert, in the writing transaction, where the
-- status change that caused the event is already applied. Null for rows written before
-- this migration.
alter table public.call_audit add column call_version integer;
comment on column public.call_audit.call_version is
  'calls.version when the row was written (after the change, for status events)';

-- SECURITY DEFINER so that any writer of the audit (owner, service_role, the definer's own
-- triggers) can read the version; it runs only as a trigger and nobody may call it.
create function orchestrator.audit_call_version() returns trigger
language plpgsql security definer set search_path = ''
as $$
begin
  if new.call_version is null then
    select c.version into new.call_version from public.calls c where c.id = new.call_id;
  end if;
  return new;
end
$$;
revoke all on function orchestrator.audit_call_version()
  from public, anon, authenticated, service_role;

create trigger call_audit_version before insert on public.call_audit
  for each row execute function orchestrator.audit_call_version();

-- The worker may connect as service_role instead of the owner. No grants to the client
-- roles: the cursor is internal.
grant select, update on orchestrator.relay_cursor to service_role;
