-- Call inspector console: operator sessions behind the `orchestrator_console` cookie.
-- In the private `orchestrator` schema (not exposed through PostgREST); only the server's own
-- connection (the table owner) reads and writes it. The cookie value itself is never stored:
-- only its SHA-256, so a leaked table row cannot be replayed as a cookie.

create table orchestrator.console_sessions (
  token_hash bytea primary key,
  user_id uuid not null references auth.users (id) on delete cascade,
  auth_session_id uuid,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  constraint console_sessions_hash_size check (octet_length(token_hash) = 32)
);
create index console_sessions_expires_idx on orchestrator.console_sessions (expires_at);
create index console_sessions_user_idx on orchestrator.console_sessions (user_id);

revoke all on orchestrator.console_sessions from public;
-- The token server may connect as service_role (as the worker may).
grant select, insert, delete on orchestrator.console_sessions to service_role;

-- The console's "now" page reads the last hour of deliveries and the live calls every few
-- seconds: keep those reads off full-table scans. (Plain CREATE INDEX: the runner applies a
-- file in one transaction; both tables stay small because `orchestrator prune` bounds them.)
create index push_deliveries_created_idx on public.push_deliveries (created_at);
create index calls_live_created_idx on public.calls (created_at) where status <> 'ended';
