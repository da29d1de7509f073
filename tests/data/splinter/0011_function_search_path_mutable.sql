-- splinter lint 0011_function_search_path_mutable: `function_search_path_mutable`, level WARN.
-- Detects: Functions that do not pin search_path (SET search_path = ...).
-- Source: supabase/splinter lints/0011_function_search_path_mutable.sql (commit
-- 0f5042e707f7a0dc377d2a7d9d4b8c8c0f87eb61), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'function_search_path_mutable' as name, 'WARN' as level, n.nspname::text as schema,
  p.proname::text as object, 'search_path is not set' as detail
from pg_catalog.pg_proc p
join pg_catalog.pg_namespace n on n.oid = p.pronamespace
where n.nspname not in (
    '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_config', '_timescaledb_internal',
    'auth', 'cron', 'extensions', 'graphql', 'graphql_public', 'information_schema', 'net',
    'pgmq', 'pgroonga', 'pgsodium', 'pgsodium_masks', 'pgtle', 'pgbouncer', 'pg_catalog',
    'realtime', 'repack', 'storage', 'supabase_functions', 'supabase_migrations', 'tiger',
    'topology', 'vault'
  )
  and not exists (
    select 1 from pg_catalog.pg_depend e where e.objid = p.oid and e.deptype = 'e'
  )
  and not exists (
    select 1 from unnest(coalesce(p.proconfig, '{}')) as s (setting)
    where s.setting like 'search\_path=%'
  )
