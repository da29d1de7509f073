-- splinter lint 0005_unused_index: `unused_index`, level INFO.
-- Detects: Non-unique indexes never scanned since statistics were reset.
-- Source: supabase/splinter lints/0005_unused_index.sql (as compiled in splinter.sql at
-- 03d959d588512198fbc21ff6c26e0c50953903b9), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'unused_index' as name, 'INFO' as level, s.schemaname::text as schema, s.relname::text as object,
  format('index %s has not been used', s.indexrelname) as detail
from pg_catalog.pg_stat_user_indexes s
join pg_catalog.pg_index i on i.indexrelid = s.indexrelid
where s.idx_scan = 0 and not i.indisunique and not i.indisprimary
  and not exists (
    select 1 from pg_catalog.pg_depend e where e.objid = s.relid and e.deptype = 'e'
  )
  and s.schemaname not in (
    '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_config', '_timescaledb_internal',
    'auth', 'cron', 'extensions', 'graphql', 'graphql_public', 'information_schema', 'net',
    'pgmq', 'pgroonga', 'pgsodium', 'pgsodium_masks', 'pgtle', 'pgbouncer', 'pg_catalog',
    'realtime', 'repack', 'storage', 'supabase_functions', 'supabase_migrations', 'tiger',
    'topology', 'vault'
  )
