-- splinter lint 0030_invalid_index: `invalid_index`, level WARN.
-- Detects: Indexes left invalid (for example by a failed CREATE INDEX CONCURRENTLY).
-- Source: supabase/splinter lints/0030_invalid_index.sql (commit
-- 11d5c6262eadc97b1adc0bbd9ae4b6056c8192bf), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'invalid_index' as name, 'WARN' as level, n.nspname::text as schema, t.relname::text as object,
  format('index %s is invalid', ic.relname) as detail
from pg_catalog.pg_index i
join pg_catalog.pg_class ic on ic.oid = i.indexrelid
join pg_catalog.pg_class t on t.oid = i.indrelid
join pg_catalog.pg_namespace n on n.oid = t.relnamespace
where not i.indisvalid and i.indisready
  and not exists (
    select 1 from pg_catalog.pg_stat_progress_create_index b where b.index_relid = ic.oid
  )
  and not exists (
    select 1 from pg_catalog.pg_depend e where e.objid = ic.oid and e.deptype = 'e'
  )
  and n.nspname not in (
    '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_config', '_timescaledb_internal',
    'auth', 'cron', 'extensions', 'graphql', 'graphql_public', 'information_schema', 'net',
    'pgmq', 'pgroonga', 'pgsodium', 'pgsodium_masks', 'pgtle', 'pgbouncer', 'pg_catalog',
    'realtime', 'repack', 'storage', 'supabase_functions', 'supabase_migrations', 'tiger',
    'topology', 'vault'
  )
