-- splinter lint 0028_anon_security_definer_function_executable:
-- `anon_security_definer_function_executable`, level WARN.
-- Detects: SECURITY DEFINER functions that `anon` may EXECUTE (reachable as /rest/v1/rpc/<name>).
-- Source: supabase/splinter lints/0028_anon_security_definer_function_executable.sql (commit
-- 0f5042e707f7a0dc377d2a7d9d4b8c8c0f87eb61), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'anon_security_definer_function_executable' as name, 'WARN' as level, n.nspname::text as schema,
  p.proname::text as object,
  format('%s(%s) is SECURITY DEFINER and executable by anon', p.proname,
         pg_catalog.pg_get_function_identity_arguments(p.oid)) as detail
from pg_catalog.pg_proc p
join pg_catalog.pg_namespace n on n.oid = p.pronamespace
where p.prosecdef
  and pg_catalog.has_function_privilege('anon', p.oid, 'EXECUTE')
  and n.nspname not in (
    '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_config', '_timescaledb_internal',
    'auth', 'cron', 'extensions', 'graphql', 'graphql_public', 'information_schema', 'net',
    'pgmq', 'pgroonga', 'pgsodium', 'pgsodium_masks', 'pgtle', 'pgbouncer', 'pg_catalog',
    'realtime', 'repack', 'storage', 'supabase_functions', 'supabase_migrations', 'tiger',
    'topology', 'vault'
  )
