-- splinter lint 0013_rls_disabled_in_public: `rls_disabled_in_public`, level ERROR.
-- Detects: Tables in an exposed schema that anon/authenticated can read with RLS disabled.
-- Source: supabase/splinter lints/0013_rls_disabled_in_public.sql (newest stored copy; the index
-- did not record its commit), read 2026-12-01. Re-expressed in our own SQL with the same name,
-- level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'rls_disabled_in_public' as name, 'ERROR' as level, n.nspname::text as schema,
  c.relname::text as object, 'exposed table without RLS' as detail
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relkind = 'r' and not c.relrowsecurity
  and (
    pg_catalog.has_table_privilege('anon', c.oid, 'SELECT')
    or pg_catalog.has_table_privilege('authenticated', c.oid, 'SELECT')
  )
  and n.nspname = any (
    string_to_array(replace(current_setting('pgrst.db_schemas', true), ' ', ''), ',')
  )
  and n.nspname not in (
    '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_config', '_timescaledb_internal',
    'auth', 'cron', 'extensions', 'graphql', 'graphql_public', 'information_schema', 'net',
    'pgmq', 'pgroonga', 'pgsodium', 'pgsodium_masks', 'pgtle', 'pgbouncer', 'pg_catalog',
    'realtime', 'repack', 'storage', 'supabase_functions', 'supabase_migrations', 'tiger',
    'topology', 'vault'
  )
