-- splinter lint 0030_rls_policy_null_auth_disjunct: `rls_policy_null_auth_disjunct`, level WARN.
-- Detects: Permissive read policies that are true whenever an auth function is NULL (`auth.uid() IS
-- NULL OR ...`).
-- Source: supabase/splinter lints/0030_rls_policy_null_auth_disjunct.sql (commit
-- 245e30857041e1fa8c261a62f7711bff9d0665ff), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Simplified on purpose: any NULL-test of auth.uid()/jwt()/role() or current_setting(..., true) in
-- the USING clause is flagged, even inside an AND (upstream flags top-level OR only), so this finds
-- a superset of upstream's rows.
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'rls_policy_null_auth_disjunct' as name, 'WARN' as level, n.nspname::text as schema,
  c.relname::text as object, format('policy %s admits every row when auth is NULL', p.polname)
    as detail
from pg_catalog.pg_policy p
join pg_catalog.pg_class c on c.oid = p.polrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relkind = 'r' and c.relrowsecurity and p.polpermissive and p.polcmd in ('r', '*')
  and (p.polroles = array[0::oid]
       or exists (select 1 from unnest(p.polroles) as r (oid)
                  where r.oid::regrole::text in ('anon', 'authenticated')))
  and n.nspname not in (
    '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_config', '_timescaledb_internal',
    'auth', 'cron', 'extensions', 'graphql', 'graphql_public', 'information_schema', 'net',
    'pgmq', 'pgroonga', 'pgsodium', 'pgsodium_masks', 'pgtle', 'pgbouncer', 'pg_catalog',
    'realtime', 'repack', 'storage', 'supabase_functions', 'supabase_migrations', 'tiger',
    'topology', 'vault'
  )
  and regexp_replace(
    lower(coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '')), '\s', '', 'g'
  )
      ~ '(auth\.(uid|jwt|role)\(\)|current_setting\([^)]*,true\))isnull|not\((auth\.(uid|jwt|role)\(\)|current_setting\([^)]*,true\))isnotnull\)'
