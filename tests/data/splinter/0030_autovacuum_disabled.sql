-- splinter lint 0030_autovacuum_disabled: `autovacuum_disabled`, level INFO.
-- Detects: Tables with autovacuum_enabled=false.
-- Source: supabase/splinter lints/0030_autovacuum_disabled.sql (commit
-- 1af6467a3ee524fd27ebfeed1c92e793a01bbc5d), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'autovacuum_disabled' as name, 'INFO' as level, n.nspname::text as schema,
  c.relname::text as object, 'autovacuum_enabled=false' as detail
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relkind = 'r' and 'autovacuum_enabled=false' = any (c.reloptions)
  and n.nspname not in (
    '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_config', '_timescaledb_internal',
    'auth', 'cron', 'extensions', 'graphql', 'graphql_public', 'information_schema', 'net',
    'pgmq', 'pgroonga', 'pgsodium', 'pgsodium_masks', 'pgtle', 'pgbouncer', 'pg_catalog',
    'realtime', 'repack', 'storage', 'supabase_functions', 'supabase_migrations', 'tiger',
    'topology', 'vault'
  )
