-- splinter lint 0009_duplicate_index: `duplicate_index`, level WARN.
-- Detects: Two or more indexes with the same definition on one table.
-- Source: supabase/splinter lints/0009_duplicate_index.sql (commit
-- 0f5042e707f7a0dc377d2a7d9d4b8c8c0f87eb61), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'duplicate_index' as name, 'WARN' as level, n.nspname::text as schema, c.relname::text as object,
  format('identical indexes: %s', string_agg(i.indexname, ', ' order by i.indexname)) as detail
from pg_catalog.pg_indexes i
join pg_catalog.pg_namespace n on n.nspname = i.schemaname
join pg_catalog.pg_class c on c.relname = i.tablename and c.relnamespace = n.oid
where c.relkind in ('r', 'm')
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
group by n.nspname, c.relname, replace(i.indexdef, i.indexname, '')
having count(*) > 1
