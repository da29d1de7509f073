"""A PostgREST stand-in over real HTTP on 127.0.0.1, for supabase-js (the client kit's tests).

It speaks the part of PostgREST's protocol supabase-js uses for our tables and RPCs: `GET`,
`POST` and `PATCH` on `/rest/v1/<table>` with `col=eq.value` filters, `select=*`,
`Prefer: return=representation` and the singular `Accept: application/vnd.pgrst.object+json`
(406 PGRST116 when not exactly one row), and `POST /rest/v1/rpc/<function>` with named JSON
arguments. Like PostgREST, every request runs in one transaction as the JWT's role with
`request.jwt.claims` set, bodies go through `json_populate_record`, and database errors come
back as `{code, message, details, hint}` with PostgREST's status for the SQLSTATE. So RLS,
column grants, triggers and the RPCs' own checks are the real ones.
"""

from __future__ import annotations

import json
import re
from typing import Any

import asyncpg
import jwt
from aiohttp import web

SINGULAR = "application/vnd.pgrst.object+json"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_STATUS = {"42501": 403, "23505": 409, "23503": 409, "P0002": 404, "42883": 404, "42P01": 404}


def _ident(name: str) -> str:
    if not _NAME.match(name):
        raise web.HTTPBadRequest(text=f"bad identifier {name!r}")
    return f'"{name}"'


def _error(status: int, code: str, message: str, details: str | None = None) -> web.Response:
    body = {"code": code, "message": message, "details": details, "hint": None}
    return web.json_response(body, status=status)


class FakePostgrest:
    def __init__(self, dsn: str, jwt_secret: str) -> None:
        self.dsn, self.secret = dsn, jwt_secret
        self.url = ""
        self.requests: list[tuple[str, str]] = []  # (method, path) seen, for assertions
        self._pool: asyncpg.Pool | None = None
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> FakePostgrest:
        self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=4)
        app = web.Application()
        app.router.add_route("*", "/rest/v1/rpc/{fn}", self._rpc)
        app.router.add_route("*", "/rest/v1/{table}", self._table)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._pool is not None:
            await self._pool.close()

    def _claims(self, request: web.Request) -> dict[str, Any]:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip()
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self.secret, algorithms=["HS256"], audience="authenticated"
            )
        except jwt.PyJWTError as exc:
            raise web.HTTPUnauthorized(
                text=json.dumps({"code": "PGRST301", "message": "JWT invalid"}),
                content_type="application/json",
            ) from exc
        if claims.get("role") not in ("anon", "authenticated"):
            raise web.HTTPUnauthorized(text="role not allowed")
        return claims

    async def _run(self, request: web.Request, sql: str, *args: Any) -> web.Response:
        """Run `sql` (returning one json value) as the JWT's user, answer like PostgREST."""
        self.requests.append((request.method, request.path))
        claims = self._claims(request)
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await conn.execute(f"set local role {claims['role']}")
                    await conn.execute(
                        "select set_config('request.jwt.claims', $1, true)", json.dumps(claims)
                    )
                    value = await conn.fetchval(sql, *args)
            except asyncpg.PostgresError as exc:
                code = str(exc.sqlstate or "XX000")
                status = _STATUS.get(code, 500 if code.startswith("XX") else 400)
                return _error(status, code, str(getattr(exc, "message", exc)), exc.detail)
        return self._answer(request, value)

    def _answer(self, request: web.Request, value: Any) -> web.Response:
        rpc = request.path.startswith("/rest/v1/rpc/")
        data = json.loads(value) if isinstance(value, str) else value
        if request.headers.get("Accept", "") == SINGULAR and isinstance(data, list):
            if len(data) != 1:
                return _error(
                    406,
                    "PGRST116",
                    "JSON object requested, multiple (or no) rows returned",
                    f"The result contains {len(data)} rows",
                )
            data = data[0]
        if (
            not rpc
            and request.method in ("POST", "PATCH")
            and "return=representation" not in request.headers.get("Prefer", "")
        ):
            return web.Response(status=201 if request.method == "POST" else 204)
        status = 201 if request.method == "POST" and not rpc else 200
        return web.json_response(data, status=status)

    def _filters(self, request: web.Request, first: int) -> tuple[str, list[str]]:
        clauses, args = [], []
        for key, value in request.query.items():
            if key in ("select", "columns"):
                if key == "select" and value != "*":
                    raise web.HTTPBadRequest(text="only select=* is supported")
                continue
            if not value.startswith("eq."):
                raise web.HTTPBadRequest(text=f"only eq filters are supported: {key}")
            args.append(value[3:])
            clauses.append(f"t.{_ident(key)}::text = ${first + len(args) - 1}")
        return (" where " + " and ".join(clauses)) if clauses else "", args

    async def _table(self, request: web.Request) -> web.Response:
        table = f"public.{_ident(request.match_info['table'])}"
        agg = "select coalesce(json_agg(to_json(r)), '[]'::json)::text from r"
        if request.method == "GET":
            where, args = self._filters(request, 1)
            return await self._run(
                request, f"with r as (select t.* from {table} t{where}) {agg}", *args
            )
        body = await request.json()
        rows = body if isinstance(body, list) else [body]
        if request.method == "POST":
            cols = ", ".join(_ident(c) for c in rows[0])
            sql = (
                f"with r as (insert into {table} as t ({cols}) select {cols}"
                f" from json_populate_recordset(null::{table}, $1::json) returning t.*) {agg}"
            )
            return await self._run(request, sql, json.dumps(rows))
        if request.method == "PATCH":
            where, args = self._filters(request, 2)
            sets = ", ".join(f"{_ident(c)} = b.{_ident(c)}" for c in body)
            sql = (
                f"with r as (update {table} as t set {sets}"
                f" from (select * from json_populate_record(null::{table}, $1::json)) b"
                f"{where} returning t.*) {agg}"
            )
            return await self._run(request, sql, json.dumps(body), *args)
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST", "PATCH"])

    async def _rpc(self, request: web.Request) -> web.Response:
        fn = _ident(request.match_info["fn"])
        args: dict[str, Any] = await request.json() if request.can_read_body else {}
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            signature = await conn.fetchrow(
                "select p.proargnames, p.proargtypes::regtype[]::text[] as types"
                " from pg_proc p where p.pronamespace = 'public'::regnamespace and p.proname = $1",
                request.match_info["fn"],
            )
        if signature is None:
            self.requests.append((request.method, request.path))
            return _error(404, "PGRST202", f"Could not find the function public.{fn}")
        types = dict(zip(signature["proargnames"] or [], signature["types"], strict=False))
        if unknown := set(args) - set(types):
            return _error(404, "PGRST202", f"no function with arguments {sorted(unknown)}")
        named = ", ".join(f"{_ident(a)} := a.{_ident(a)}" for a in args)
        record = ", ".join(f"{_ident(a)} {types[a]}" for a in args) or "_unused int"
        sql = (
            f"select to_json(public.{fn}({named}))::text"
            f" from json_to_record($1::json) as a({record})"
        )
        return await self._run(request, sql, json.dumps(args))
