-- splinter lint 0003_auth_rls_initplan: `auth_rls_initplan`, level WARN.
-- Detects: RLS policies calling auth.uid()/jwt()/role()/email() or current_setting() directly, so
-- the call is re-evaluated for every row instead of once through `(select ...)`.
-- Source: supabase/splinter lints/0003_auth_rls_initplan.sql (newest stored copy; the index did not
-- record its commit), read 2026-12-01. Re-expressed in our own SQL with the same name, level and
-- predicate (see README.md).
-- The current_setting() case follows the newer compiled splinter.sql that Supabase Studio vendors.
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

with policies as (
  select n.nspname::text as schema, c.relname::text as tbl, p.polname::text as policy,
         pg_catalog.pg_get_expr(p.polqual, p.polrelid) as qual,
         pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) as with_check
  from pg_catalog.pg_policy p
  join pg_catalog.pg_class c on c.oid = p.polrelid
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
  where c.relrowsecurity
    and n.nspname not in (
      '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_config', '_timescaledb_internal',
    'auth', 'cron', 'extensions', 'graphql', 'graphql_public', 'information_schema', 'net',
    'pgmq', 'pgroonga', 'pgsodium', 'pgsodium_masks', 'pgtle', 'pgbouncer', 'pg_catalog',
    'repack', 'storage', 'supabase_functions', 'supabase_migrations', 'tiger',
    'topology', 'vault'
    )
)
select distinct
  'auth_rls_initplan' as name, 'WARN' as level, p.schema, p.tbl as object,
  format('policy %s re-evaluates %s for each row', p.policy, f.fn) as detail
from policies p
cross join lateral (values (p.qual), (p.with_check)) as e (expr)
cross join (values ('auth.uid()'), ('auth.jwt()'), ('auth.role()'), ('auth.email()'),
                   ('current_setting(')) as f (fn)
where strpos(e.expr, f.fn) > 0
  and strpos(lower(e.expr), 'select ' || f.fn) = 0
