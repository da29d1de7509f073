-- splinter lint 0022_extension_versions_outdated: `extension_versions_outdated`, level WARN.
-- Detects: Installed extensions not at their default version.
-- Source: supabase/splinter lints/0022_extension_versions_outdated.sql (commit
-- 0aea782f1f1f44c63481432f4301541652c46899), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'extension_versions_outdated' as name, 'WARN' as level, null::text as schema,
  x.name::text as object,
  format('installed %s, default %s', x.installed_version, x.default_version) as detail
from pg_catalog.pg_available_extensions x
where x.installed_version is not null and x.default_version is not null
  and x.installed_version <> x.default_version
