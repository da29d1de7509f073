-- splinter lint 0015_rls_references_user_metadata: `rls_references_user_metadata`, level ERROR.
-- Detects: Policies that trust user_metadata from the JWT (end users can edit it).
-- Source: supabase/splinter lints/0015_rls_references_user_metadata.sql (commit
-- 182229332254ecb42dace59a2acc17273911b24b), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select distinct
  'rls_references_user_metadata' as name, 'ERROR' as level, n.nspname::text as schema,
  c.relname::text as object, format('policy %s uses user_metadata', p.polname) as detail
from pg_catalog.pg_policy p
join pg_catalog.pg_class c on c.oid = p.polrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
cross join lateral (values (pg_catalog.pg_get_expr(p.polqual, p.polrelid)),
                           (pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid))) as e (expr)
where n.nspname not in (
    '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_config', '_timescaledb_internal',
    'auth', 'cron', 'extensions', 'graphql', 'graphql_public', 'information_schema', 'net',
    'pgmq', 'pgroonga', 'pgsodium', 'pgsodium_masks', 'pgtle', 'pgbouncer', 'pg_catalog',
    'realtime', 'repack', 'storage', 'supabase_functions', 'supabase_migrations', 'tiger',
    'topology', 'vault'
  )
  and (e.expr like '%auth.jwt()%user_metadata%'
       or e.expr like '%current_setting(%request.jwt.claims%)%user_metadata%')
