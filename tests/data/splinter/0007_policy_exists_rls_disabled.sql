-- splinter lint 0007_policy_exists_rls_disabled: `policy_exists_rls_disabled`, level ERROR.
-- Detects: Tables that have RLS policies while RLS is disabled.
-- Source: supabase/splinter lints/0007_policy_exists_rls_disabled.sql (newest stored copy; the
-- index did not record its commit), read 2026-12-01. Re-expressed in our own SQL with the same
-- name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'policy_exists_rls_disabled' as name, 'ERROR' as level, n.nspname::text as schema,
  c.relname::text as object,
  format('RLS is disabled but policies exist: %s', string_agg(p.polname, ', ')) as detail
from pg_catalog.pg_policy p
join pg_catalog.pg_class c on c.oid = p.polrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relkind = 'r' and not c.relrowsecurity
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
group by n.nspname, c.relname
