-- splinter lint 0023_sensitive_columns_exposed: `sensitive_columns_exposed`, level ERROR.
-- Detects: Exposed tables without RLS that have columns named like credentials or personal data.
-- Source: supabase/splinter lints/0023_sensitive_columns_exposed.sql (commit
-- 4818ede31d8150b4d40f81e15b3835e08401fe79), read 2026-12-01. Re-expressed in our own SQL with the
-- same name, level and predicate (see README.md).
-- Returns name, level, schema, object, detail; run with search_path = '' and pgrst.db_schemas set,
-- as the Supabase dashboard does.

select
  'sensitive_columns_exposed' as name, 'ERROR' as level, n.nspname::text as schema,
  c.relname::text as object,
  format('sensitive columns without RLS: %s', string_agg(a.attname, ', ' order by a.attname))
    as detail
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
where c.relkind = 'r' and not c.relrowsecurity
  and (
    pg_catalog.has_table_privilege('anon', c.oid, 'SELECT')
    or pg_catalog.has_table_privilege('authenticated', c.oid, 'SELECT')
  )
  and n.nspname = any (
    string_to_array(replace(current_setting('pgrst.db_schemas', true), ' ', ''), ',')
  )
  and n.nspname not in (
    '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_config', '_timescaledb_internal',
    'auth', 'cron', 'extensions', 'graphql', 'graphql_public', 'information_schema', 'net',
    'pgmq', 'pgroonga', 'pgsodium', 'pgsodium_masks', 'pgtle', 'pgbouncer', 'pg_catalog',
    'realtime', 'repack', 'storage', 'supabase_functions', 'supabase_migrations', 'tiger',
    'topology', 'vault'
  )
  and replace(lower(a.attname), '-', '_') in (
    'password', 'passwd', 'pwd', 'passphrase', 'secret', 'secret_key', 'private_key',
    'api_key', 'apikey', 'auth_key', 'token', 'jwt', 'access_token', 'refresh_token',
    'oauth_token', 'session_token', 'bearer_token', 'auth_code', 'session_id',
    'session_key', 'session_secret', 'recovery_code', 'backup_code', 'verification_code',
    'otp', 'two_factor', '2fa_secret', '2fa_code', 'ssn', 'social_security',
    'social_security_number', 'driver_license', 'drivers_license', 'license_number',
    'passport_number', 'passport_id', 'national_id', 'tax_id', 'credit_card', 'card_number',
    'cvv', 'cvc', 'cvn', 'bank_account', 'account_number', 'routing_number', 'iban',
    'swift_code', 'bic', 'health_record', 'medical_record', 'patient_id',
    'insurance_number', 'health_insurance', 'medical_insurance', 'treatment', 'mac_address',
    'macaddr', 'imei', 'device_uuid', 'pgp_key', 'gpg_key', 'ssh_key', 'certificate',
    'license_key', 'activation_key', 'facial_recognition'
  )
group by n.nspname, c.relname
