-- splinter lint 0002_auth_users_exposed: `auth_users_exposed`, level ERROR.
-- Detects: Views or materialized views over auth.users that anon/authenticated can read in an
-- exposed schema (a materialized view, a definer view, or an invoker view while auth.users has no
-- RLS).
-- Source: supabase/splinter lints/0002_auth_users_exposed.sql (newest stored copy; the index did
-- not record its commit), read 2026-12-01. Re-expressed in our own SQL with the same name, level
-- and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select distinct
  'auth_users_exposed' as name, 'ERROR' as level, n.nspname::text as schema,
  v.relname::text as object, 'may expose auth.users to anon or authenticated' as detail
from pg_catalog.pg_class u
join pg_catalog.pg_namespace un on un.oid = u.relnamespace
join pg_catalog.pg_depend d on d.refobjid = u.oid and d.deptype = 'n'
join pg_catalog.pg_rewrite r on r.oid = d.objid
join pg_catalog.pg_class v on v.oid = r.ev_class
join pg_catalog.pg_namespace n on n.oid = v.relnamespace
where un.nspname = 'auth' and u.relname = 'users'
  and v.relkind in ('v', 'm')
  and v.relname <> '0002_auth_users_exposed'
  and (
    pg_catalog.has_table_privilege('anon', v.oid, 'SELECT')
    or pg_catalog.has_table_privilege('authenticated', v.oid, 'SELECT')
  )
  and n.nspname = any (
    string_to_array(replace(current_setting('pgrst.db_schemas', true), ' ', ''), ',')
  )
  and (v.relkind = 'm' or not (lower(coalesce(v.reloptions::text, '{}'))::text[] && array[
      'security_invoker=1', 'security_invoker=true', 'security_invoker=yes', 'security_invoker=on'
    ]) or not u.relrowsecurity)
