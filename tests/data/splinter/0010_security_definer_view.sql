-- splinter lint 0010_security_definer_view: `security_definer_view`, level ERROR.
-- Detects: Views (not security_invoker) that anon/authenticated can read in an exposed schema.
-- Source: supabase/splinter lints/0010_security_definer_view.sql (commit
-- 050ad01d66bfb29c546535c1033dd189a0f11b20), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'security_definer_view' as name, 'ERROR' as level, n.nspname::text as schema,
  c.relname::text as object, 'view runs with its owner''s rights' as detail
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relkind = 'v'
  and (
    pg_catalog.has_table_privilege('anon', c.oid, 'SELECT')
    or pg_catalog.has_table_privilege('authenticated', c.oid, 'SELECT')
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
  and not (lower(coalesce(c.reloptions::text, '{}'))::text[] && array[
      'security_invoker=1', 'security_invoker=true', 'security_invoker=yes', 'security_invoker=on'
    ])
