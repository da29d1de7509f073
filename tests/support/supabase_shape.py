"""A database shaped like a Supabase project's, on the tests' PostgreSQL server.

As on Supabase: the database belongs to a `postgres`-like role that is NOT a superuser
(CREATEROLE, BYPASSRLS, member of anon/authenticated/service_role); the `auth` schema and its
tables belong to `supabase_auth_admin`, shaped like GoTrue's (`auth.users.id` has no default),
and the owner may read and write them but not create anything in `auth`; the
`supabase_realtime` publication exists; new objects in `public` are granted to the API roles.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tests.conftest import with_database

ROLES = """
do $$
declare r text;
begin
  foreach r in array array['anon', 'authenticated', 'service_role', 'supabase_auth_admin'] loop
    begin
      execute format('create role %I nologin noinherit', r);
    exception when duplicate_object or unique_violation then null;  -- shared cluster
    end;
  end loop;
end
$$;
"""

AUTH = """
create schema auth authorization supabase_auth_admin;
create table auth.users (
  instance_id uuid null,
  id uuid not null,
  aud varchar(255) null,
  "role" varchar(255) null,
  email varchar(255) null,
  encrypted_password varchar(255) null,
  email_confirmed_at timestamptz null,
  invited_at timestamptz null,
  confirmation_token varchar(255) null,
  recovery_token varchar(255) null,
  last_sign_in_at timestamptz null,
  raw_app_meta_data jsonb null,
  raw_user_meta_data jsonb null,
  is_super_admin bool null,
  created_at timestamptz null,
  updated_at timestamptz null,
  phone text null unique default null,
  banned_until timestamptz null,
  is_sso_user boolean not null default false,
  deleted_at timestamptz null,
  is_anonymous boolean not null default false,
  constraint users_pkey primary key (id)
);
create unique index users_email_partial_key on auth.users (email) where (is_sso_user = false);
create table auth.sessions (
  id uuid not null primary key,
  user_id uuid not null references auth.users (id) on delete cascade,
  created_at timestamptz null,
  updated_at timestamptz null,
  factor_id uuid null,
  aal text null,
  not_after timestamptz null
);
create function auth.uid() returns uuid language sql stable as $$
  select coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid
$$;
create function auth.role() returns text language sql stable as $$
  select coalesce(nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'))::text
$$;
create function auth.jwt() returns jsonb language sql stable as $$
  select coalesce(nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), ''))::jsonb
$$;
alter table auth.users owner to supabase_auth_admin;
alter table auth.sessions owner to supabase_auth_admin;
alter function auth.uid() owner to supabase_auth_admin;
alter function auth.role() owner to supabase_auth_admin;
alter function auth.jwt() owner to supabase_auth_admin;
grant usage on schema auth to {owner}, anon, authenticated, service_role;
grant select, insert, update, delete, references on all tables in schema auth to {owner};
grant execute on all functions in schema auth to {owner}, anon, authenticated, service_role;
grant usage on schema public to anon, authenticated, service_role;
create publication supabase_realtime;
alter publication supabase_realtime owner to {owner};
alter default privileges for role {owner} in schema public
  grant all on tables to anon, authenticated, service_role;
alter default privileges for role {owner} in schema public
  grant all on functions to anon, authenticated, service_role;
alter default privileges for role {owner} in schema public
  grant all on sequences to anon, authenticated, service_role;
"""


@dataclass
class SupabaseShaped:
    dsn: str  # as the postgres-like owner (NOSUPERUSER)
    admin_dsn: str  # as the server's superuser, for the test's own checks
    owner: str


def _as_user(dsn: str, user: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.split("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{user}@{host}", parts.path, parts.query, ""))


@asynccontextmanager
async def supabase_shaped(server_dsn: str) -> AsyncIterator[SupabaseShaped]:
    suffix = uuid.uuid4().hex[:10]
    name, owner = f"orch_supa_{suffix}", f"orch_pg_{suffix}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(ROLES)
        await admin.execute(f"create role {owner} login nosuperuser createrole bypassrls inherit")
        await admin.execute(f"grant anon, authenticated, service_role to {owner}")
        await admin.execute(f"create database {name} owner {owner}")
        db_admin_dsn = with_database(server_dsn, name)
        conn = await asyncpg.connect(db_admin_dsn)
        try:
            await conn.execute(AUTH.format(owner=owner))
        finally:
            await conn.close()
        yield SupabaseShaped(_as_user(db_admin_dsn, owner), db_admin_dsn, owner)
    finally:
        await admin.execute(f"drop database if exists {name} with (force)")
        await admin.execute(f"drop role if exists {owner}")
        await admin.close()
