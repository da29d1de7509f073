-- splinter lint 0019_insecure_queue_exposed_in_api: `insecure_queue_exposed_in_api`, level ERROR.
-- Detects: pgmq queue tables without RLS readable by API roles while pgmq_public is exposed.
-- Source: supabase/splinter lints/0019_insecure_queue_exposed_in_api.sql (commit
-- 506bd558221e7489b83b7ccc12fc6825253ebbbd), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'insecure_queue_exposed_in_api' as name, 'ERROR' as level, n.nspname::text as schema,
  c.relname::text as object, 'queue table exposed without RLS' as detail
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'I') and not c.relrowsecurity
  and (
    pg_catalog.has_table_privilege('anon', c.oid, 'SELECT')
    or pg_catalog.has_table_privilege('authenticated', c.oid, 'SELECT')
  )
  and n.nspname = 'pgmq' and c.relname like 'q\_%'
  and 'pgmq_public' = any (
    string_to_array(replace(current_setting('pgrst.db_schemas', true), ' ', ''), ',')
  )
