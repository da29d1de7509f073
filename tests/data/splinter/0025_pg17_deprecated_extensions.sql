-- splinter lint 0025_pg17_deprecated_extensions: `pg17_deprecated_extensions`, level WARN.
-- Detects: Extensions that Supabase's PostgreSQL 17 images no longer ship.
-- Source: supabase/splinter lints/0025_pg17_deprecated_extensions.sql (commit
-- 2bb42c27d2c308a52e47029737801b75abe1fa13), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'pg17_deprecated_extensions' as name, 'WARN' as level, null::text as schema,
  e.extname::text as object, 'deprecated in PostgreSQL 17 images' as detail
from pg_catalog.pg_extension e
where e.extname in ('plv8', 'timescaledb', 'adminpack')
