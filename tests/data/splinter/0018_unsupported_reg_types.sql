-- splinter lint 0018_unsupported_reg_types: `unsupported_reg_types`, level WARN.
-- Detects: Columns of reg* types that pg_upgrade cannot carry over.
-- Source: supabase/splinter lints/0018_unsupported_reg_types.sql (commit
-- 28e6c57c31cf5f1ba9d3a3ff0f050f4b894a2842), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'unsupported_reg_types' as name, 'WARN' as level, n.nspname::text as schema,
  c.relname::text as object, format('column %s has type %s', a.attname, t.typname) as detail
from pg_catalog.pg_attribute a
join pg_catalog.pg_class c on c.oid = a.attrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
join pg_catalog.pg_type t on t.oid = a.atttypid
join pg_catalog.pg_namespace tn on tn.oid = t.typnamespace
where tn.nspname = 'pg_catalog'
  and t.typname in ('regcollation', 'regconfig', 'regdictionary', 'regnamespace', 'regoper',
                    'regoperator', 'regproc', 'regprocedure')
  and n.nspname not in ('pg_catalog', 'information_schema', 'pgsodium')
