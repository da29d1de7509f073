-- splinter lint 0014_extension_in_public: `extension_in_public`, level WARN.
-- Detects: Extensions (other than plpgsql) installed in the public schema.
-- Source: supabase/splinter lints/0014_extension_in_public.sql (commit
-- 383c7c92e799b2ab110c00f0b248c2967fcda51a), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'extension_in_public' as name, 'WARN' as level, 'public' as schema, e.extname::text as object,
  'extension installed in public' as detail
from pg_catalog.pg_extension e
join pg_catalog.pg_namespace n on n.oid = e.extnamespace
where e.extname <> 'plpgsql' and n.nspname = 'public'
