-- Call orchestrator, migration 5: what the MQTT relay needs (expand-only: one new internal
-- table, one function, one nullable column with its trigger, one index).
--
-- The relay publishes call_audit in id order, never skipping a row. Ids are drawn at insert
-- but commit out of order, so a cursor on `id > last` alone would skip a row whose transaction
-- commits after a later id was published; filtering on txid < xmin would not skip, but waits
-- for every writing transaction on the cluster and still lets a later id out first when its
-- transaction has the older xid. Instead the relay publishes up to a watermark: the sequence's
-- last id, once every transaction that was then writing call_audit has finished. An insert
-- holds RowExclusiveLock on call_audit from before it draws its id until its transaction ends,
-- so after those transactions, every id up to the watermark is committed or never will be.
-- Only audit writers are waited for. The txid horizon is the safety net: a row at or below
-- the cursor's id that was not visible in the horizon snapshot is published late rather
-- than lost, whatever assumption broke (a sequence given a cache, a restarted identity).

-- One row per relay ('mqtt'). Only the relay holding the session advisory lock writes it,
-- and only after the broker acknowledged (PUBACK) every message of the rows it covers.
-- Published: every row with id <= last_id that is visible in `horizon`.
create table orchestrator.relay_cursor (
  name text primary key,
  last_id bigint not null,
  horizon pg_snapshot not null,
  updated_at timestamptz not null default now(),
  updated_by text
);
comment on table orchestrator.relay_cursor is
  'call-orchestrator: how far the MQTT relay has published call_audit';

-- Seeded here: rows that already exist count as published (no flood of old history when the
-- migration reaches an existing database); every later row is published once a relay runs.
-- To skip a backlog on purpose: set last_id to max(id) and horizon to pg_current_snapshot().
insert into orchestrator.relay_cursor (name, last_id, horizon)
select 'mqtt', coalesce(max(a.id), 0), pg_current_snapshot() from public.call_audit a;

-- The watermark: the last id drawn, then the transactions writing call_audit at that moment
-- (read in this order). SECURITY DEFINER only to read the sequence; nobody but the worker's
-- roles may call it.
create function orchestrator.relay_watermark(out last_id bigint, out writers text[])
returns record
language plpgsql volatile security definer set search_path = ''
as $$
begin
  select case when s.is_called then s.last_value else s.last_value - 1 end
    into last_id from public.call_audit_id_seq s;
  select coalesce(array_agg(l.virtualtransaction), '{}') into writers
  from pg_catalog.pg_locks l
  where l.locktype = 'relation'
    and l.database = (select d.oid from pg_catalog.pg_database d
                      where d.datname = pg_catalog.current_database())
    and l.relation = 'public.call_audit'::regclass
    and l.mode = 'RowExclusiveLock' and l.granted
    and l.pid is distinct from pg_catalog.pg_backend_pid();
end
$$;
revoke all on function orchestrator.relay_watermark() from public, anon, authenticated;
grant execute on function orchestrator.relay_watermark() to service_role;

-- The safety net looks up rows by txid: at or after the horizon's xmax, or in its xip list.
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
