-- splinter lint 0027_pg_graphql_authenticated_table_exposed:
-- `pg_graphql_authenticated_table_exposed`, level WARN.
-- Detects: With pg_graphql installed: relations with any column authenticated can SELECT.
-- Source: supabase/splinter lints/0027_pg_graphql_authenticated_table_exposed.sql (commit
-- 18b4bb936e78d5d4db54a91dc2f3b914945535d3), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Plain PostgreSQL has no pg_graphql, so this finds nothing here; see the test module.
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'pg_graphql_authenticated_table_exposed' as name, 'WARN' as level, n.nspname::text as schema,
  c.relname::text as object, 'visible to authenticated through pg_graphql introspection'
    as detail
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'v', 'm', 'f')
  and exists (
    select 1 from pg_catalog.pg_attribute a
    where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
      and pg_catalog.has_column_privilege('authenticated', c.oid, a.attnum, 'SELECT')
  )
  and exists (select 1 from pg_catalog.pg_extension e where e.extname = 'pg_graphql')
  and n.nspname not in (
    '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_config', '_timescaledb_internal',
    'auth', 'cron', 'extensions', 'graphql', 'graphql_public', 'information_schema', 'net',
    'pgmq', 'pgroonga', 'pgsodium', 'pgsodium_masks', 'pgtle', 'pgbouncer', 'pg_catalog',
    'realtime', 'repack', 'storage', 'supabase_functions', 'supabase_migrations', 'tiger',
    'topology', 'vault'
  )
