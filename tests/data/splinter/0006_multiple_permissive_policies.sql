-- splinter lint 0006_multiple_permissive_policies: `multiple_permissive_policies`, level WARN.
-- Detects: More than one permissive policy for the same role and command on a table.
-- Source: supabase/splinter lints/0006_multiple_permissive_policies.sql (as compiled in
-- splinter.sql at 03d959d588512198fbc21ff6c26e0c50953903b9), read 2026-12-01. Re-expressed in our
-- own SQL with the same name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'multiple_permissive_policies' as name, 'WARN' as level, n.nspname::text as schema,
  c.relname::text as object,
  format('role %s, %s: %s', r.rolname, a.cmd, string_agg(p.polname, ', ' order by p.polname))
    as detail
from pg_catalog.pg_policy p
join pg_catalog.pg_class c on c.oid = p.polrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
join pg_catalog.pg_roles r on p.polroles @> array[r.oid] or p.polroles = array[0::oid]
cross join lateral unnest(case p.polcmd
    when 'r' then array['SELECT'] when 'a' then array['INSERT'] when 'w' then array['UPDATE']
    when 'd' then array['DELETE'] else array['SELECT', 'INSERT', 'UPDATE', 'DELETE'] end)
  as a (cmd)
where c.relkind = 'r' and p.polpermissive
  and n.nspname not in (
    '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_config', '_timescaledb_internal',
    'auth', 'cron', 'extensions', 'graphql', 'graphql_public', 'information_schema', 'net',
    'pgmq', 'pgroonga', 'pgsodium', 'pgsodium_masks', 'pgtle', 'pgbouncer', 'pg_catalog',
    'realtime', 'repack', 'storage', 'supabase_functions', 'supabase_migrations', 'tiger',
    'topology', 'vault'
  )
  and r.rolname not like 'pg\_%' and r.rolname not like 'supabase%admin' and not r.rolbypassrls
  and not exists (
    select 1 from pg_catalog.pg_depend e where e.objid = c.oid and e.deptype = 'e'
  )
group by n.nspname, c.relname, r.rolname, a.cmd
having count(*) > 1
