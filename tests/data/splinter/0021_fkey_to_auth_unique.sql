-- splinter lint 0021_fkey_to_auth_unique: `fkey_to_auth_unique`, level ERROR.
-- Detects: Foreign keys into the auth schema through a unique constraint other than the primary
-- key.
-- Source: supabase/splinter lints/0021_fkey_to_auth_unique.sql (commit
-- bbfa0d33686ae32e31271abeccfc6d80a9baa4a2), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'fkey_to_auth_unique' as name, 'ERROR' as level, n.nspname::text as schema,
  c.relname::text as object, format('foreign key %s references an auth unique key', k.conname)
    as detail
from pg_catalog.pg_constraint k
join pg_catalog.pg_class c on c.oid = k.conrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
join pg_catalog.pg_class rc on rc.oid = k.confrelid
join pg_catalog.pg_namespace rn on rn.oid = rc.relnamespace
join pg_catalog.pg_index i on i.indexrelid = k.conindid
where k.contype = 'f' and rn.nspname = 'auth' and i.indisunique and not i.indisprimary
