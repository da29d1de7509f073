-- splinter lint 0008_rls_enabled_no_policy: `rls_enabled_no_policy`, level INFO.
-- Detects: Tables with RLS enabled and no policy (nobody but bypassing roles can use them).
-- Source: supabase/splinter lints/0008_rls_enabled_no_policy.sql (commit
-- 0f5042e707f7a0dc377d2a7d9d4b8c8c0f87eb61), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'rls_enabled_no_policy' as name, 'INFO' as level, n.nspname::text as schema,
  c.relname::text as object, 'RLS enabled, no policies' as detail
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relkind = 'r' and c.relrowsecurity
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
  and not exists (select 1 from pg_catalog.pg_policy p where p.polrelid = c.oid)
