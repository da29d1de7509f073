-- splinter lint 0024_rls_policy_always_true: `rls_policy_always_true`, level WARN.
-- Detects: Permissive policies for public/anon/authenticated that let every row through on a write
-- (USING true on UPDATE/DELETE/ALL, WITH CHECK true, or no WITH CHECK where nothing else limits).
-- Source: supabase/splinter lints/0024_rls_policy_always_true.sql (commit
-- 4818ede31d8150b4d40f81e15b3835e08401fe79), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Supersedes lints/0024_permissive_rls_policy.sql (same number, older name).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

with policies as (
  select n.nspname::text as schema, c.relname::text as tbl, p.polname::text as policy,
         case p.polcmd when 'r' then 'SELECT' when 'a' then 'INSERT' when 'w' then 'UPDATE'
                       when 'd' then 'DELETE' else 'ALL' end as cmd,
         pg_catalog.pg_get_expr(p.polqual, p.polrelid) as qual,
         pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) as with_check,
         regexp_replace(lower(coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '')),
                        '\s', '', 'g') as q,
         regexp_replace(lower(coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), '')),
                        '\s', '', 'g') as w
  from pg_catalog.pg_policy p
  join pg_catalog.pg_class c on c.oid = p.polrelid
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
  where c.relkind = 'r' and c.relrowsecurity and p.polpermissive
    and n.nspname not in (
      '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_config', '_timescaledb_internal',
    'auth', 'cron', 'extensions', 'graphql', 'graphql_public', 'information_schema', 'net',
    'pgmq', 'pgroonga', 'pgsodium', 'pgsodium_masks', 'pgtle', 'pgbouncer', 'pg_catalog',
    'realtime', 'repack', 'storage', 'supabase_functions', 'supabase_migrations', 'tiger',
    'topology', 'vault'
    )
    and (p.polroles = array[0::oid]
         or exists (select 1 from unnest(p.polroles) as r (oid)
                    where r.oid::regrole::text in ('anon', 'authenticated')))
)
select
  'rls_policy_always_true' as name, 'WARN' as level, schema, tbl as object,
  format('policy %s for %s lets every row through', policy, cmd) as detail
from policies
where (cmd in ('UPDATE', 'DELETE', 'ALL')
       and (q in ('true', '(true)', '1=1', '(1=1)') or qual is null))
   or w in ('true', '(true)', '1=1', '(1=1)')
   or (with_check is null and cmd = 'INSERT')
   or (with_check is null and cmd in ('UPDATE', 'ALL') and q in ('true', '(true)', '1=1', '(1=1)'))
