-- splinter lint 0017_foreign_table_in_api: `foreign_table_in_api`, level WARN.
-- Detects: Foreign tables (no RLS possible) that anon/authenticated can read in an exposed schema.
-- Source: supabase/splinter lints/0017_foreign_table_in_api.sql (commit
-- 11fb22fabeb3fca2145928e27b521cfc11cbad9a), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'foreign_table_in_api' as name, 'WARN' as level, n.nspname::text as schema,
  c.relname::text as object, 'foreign table readable by API roles' as detail
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relkind = 'f'
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
  and not exists (
    select 1 from pg_catalog.pg_depend e where e.objid = c.oid and e.deptype = 'e'
  )
