-- splinter lint 0004_no_primary_key: `no_primary_key`, level INFO.
-- Detects: Tables without a primary key.
-- Source: supabase/splinter lints/0004_no_primary_key.sql (as compiled in splinter.sql at
-- 03d959d588512198fbc21ff6c26e0c50953903b9), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'no_primary_key' as name, 'INFO' as level, n.nspname::text as schema, c.relname::text as object,
  'table has no primary key' as detail
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relkind = 'r'
  and n.nspname not in (
    '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_config', '_timescaledb_internal',
    'auth', 'cron', 'extensions', 'graphql', 'graphql_public', 'information_schema', 'net',
    'pgmq', 'pgroonga', 'pgsodium', 'pgsodium_masks', 'pgtle', 'pgbouncer', 'pg_catalog',
    'realtime', 'repack', 'storage', 'supabase_functions', 'supabase_migrations', 'tiger',
    'topology', 'vault'
  )
  and not exists (
    select 1 from pg_catalog.pg_depend e where e.objid = c.oid and e.deptype = 'e'
  )
  and not exists (
    select 1 from pg_catalog.pg_index i where i.indrelid = c.oid and i.indisprimary
  )
