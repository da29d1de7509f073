-- splinter lint 0001_unindexed_foreign_keys: `unindexed_foreign_keys`, level INFO.
-- Detects: Foreign keys whose columns do not lead any valid index.
-- Source: supabase/splinter lints/0001_unindexed_foreign_keys.sql (newest stored copy; the index
-- did not record its commit), read 2026-12-01. Re-expressed in our own SQL with the same name,
-- level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'unindexed_foreign_keys' as name, 'INFO' as level, n.nspname::text as schema,
  c.relname::text as object, format('foreign key %s has no covering index', k.conname) as detail
from pg_catalog.pg_constraint k
join pg_catalog.pg_class c on c.oid = k.conrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where k.contype = 'f'
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
    select 1 from pg_catalog.pg_index i
    where i.indrelid = k.conrelid and i.indisvalid
      and (string_to_array(i.indkey::text, ' ')::smallint[])[1:cardinality(k.conkey)] = k.conkey
  )
