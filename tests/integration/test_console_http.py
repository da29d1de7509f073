"""The console over real HTTP against a running `orchestrator serve` and the real database:
sessions, refusals, CSRF, actions and their audit rows (the browser tests cover the pages)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.fakes.jwks import hs256
from tests.fakes.supabase_password import FakePasswordAuth
from tests.support import console as c
from tests.support.db import add_device, create_session, insert_call
from tests.support.wait import wait_for
from tests.support.worker import running_worker

pytestmark = pytest.mark.postgres


@dataclass
class Env:
    url: str
    dsn: str
    auth: FakePasswordAuth
    people: c.People
    db: asyncpg.Connection


@pytest.fixture(scope="module")
async def env(
    pg_server_dsn: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Env]:
    auth = await FakePasswordAuth(c.JWT_SECRET, ttl=600).start()
    log = tmp_path_factory.mktemp("console-http") / "serve.log"
    async with c.own_database(pg_server_dsn, template_db) as dsn:
        db = await asyncpg.connect(dsn)
        try:
            found = await c.people(db, auth)
            # One trusted proxy hop: X-Forwarded-Proto says whether the cookie must be Secure.
            async with c.console_server(dsn, auth.url, log, TRUSTED_PROXY_HOPS="1") as server:
                yield Env(server.url, dsn, auth, found, db)
        finally:
            await db.close()
            await auth.stop()


async def signed_in(env: Env, email: str) -> tuple[aiohttp.ClientSession, str]:
    """A client holding the operator cookie, and the CSRF token read from a page."""
    jar = aiohttp.CookieJar(unsafe=True)  # 127.0.0.1 is an IP: allow its cookies
    http = aiohttp.ClientSession(cookie_jar=jar)
    headers = {"Authorization": f"Bearer {env.auth.token_for(email)}"}
    async with http.post(env.url + "/console/session", headers=headers) as answer:
        assert answer.status == 204, await answer.text()
    async with http.get(env.url + "/console", headers={"Accept": "text/html"}) as answer:
        page = await answer.text()
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    return http, csrf


async def test_session_cookie_is_httponly_strict_and_no_longer_than_the_token(env: Env) -> None:
    async with aiohttp.ClientSession() as http:
        token = env.auth.token_for(env.people.operator_email)
        async with http.post(
            env.url + "/console/session", headers={"Authorization": f"Bearer {token}"}
        ) as answer:
            assert answer.status == 204
            cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("orchestrator_console=")
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")}
    assert "httponly" in attributes and "secure" not in attributes  # plain HTTP here
    assert attributes["samesite"].strip().lower() == "samesite=strict"
    assert attributes["path"].strip() == "Path=/console"
    assert 0 < int(attributes["max-age"].split("=")[1]) <= 600  # the token lives 600 s
    value = cookie.split(";")[0].split("=", 1)[1]
    stored = await env.db.fetchval("select count(*) from orchestrator.console_sessions")
    assert stored >= 1
    leaked = await env.db.fetchval(
        "select count(*) from orchestrator.console_sessions"
        " where token_hash = convert_to($1, 'UTF8')",
        value,
    )
    assert leaked == 0  # only a hash is stored


async def test_the_cookie_is_secure_behind_a_tls_terminating_proxy(env: Env) -> None:
    token = env.auth.token_for(env.people.operator_email)
    for proto, secure in (("https", True), ("http", False), ("https, http", False)):
        headers = {"Authorization": f"Bearer {token}", "X-Forwarded-Proto": proto}
        async with (
            aiohttp.ClientSession() as http,
            http.post(env.url + "/console/session", headers=headers) as answer,
        ):
            assert answer.status == 204
            parts = [p.strip().lower() for p in answer.headers["Set-Cookie"].split(";")]
            assert ("secure" in parts) is secure, (proto, parts)


@pytest.mark.parametrize(
    ("authorization", "status"),
    [(None, 401), ("Bearer not.a.jwt", 401), ("Basic Zm9vOmJhcg==", 401)],
)
async def test_no_or_bad_token_is_401(env: Env, authorization: str | None, status: int) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with (
        aiohttp.ClientSession() as http,
        http.post(env.url + "/console/session", headers=headers) as answer,
    ):
        assert answer.status == status
        assert "Set-Cookie" not in answer.headers


async def test_a_forged_or_non_operator_token_gets_no_session(env: Env) -> None:
    async with aiohttp.ClientSession() as http:
        outsider = env.auth.token_for(env.people.outsider_email)
        async with http.post(
            env.url + "/console/session", headers={"Authorization": f"Bearer {outsider}"}
        ) as answer:
            assert answer.status == 403
            assert (await answer.json())["type"].endswith("/not-an-operator")
            assert "Set-Cookie" not in answer.headers
        # the role claimed in user_metadata (which users can edit) or with another key: 401
        claims = env.auth.accounts[env.people.operator_email]
        forged = hs256(
            {"sub": str(claims.user_id), "app_metadata": {"orchestrator_role": "operator"}},
            "some-other-secret-that-is-long-enough-too",
        )
        async with http.post(
            env.url + "/console/session", headers={"Authorization": f"Bearer {forged}"}
        ) as answer:
            assert answer.status == 401


@pytest.mark.parametrize(
    # Fixed ids (no such call or user): parallel workers must collect the same test ids.
    "path", ["/console", "/console/now/fragment",
             "/console/calls/5f0c2d2e-7d3a-4b8e-9a51-0c6e2b7f4d10",
             "/console/users/0b8e4c1a-2f6d-4e3b-8c7a-9d5e1f2a3b4c", "/console/find?q=x"],
)  # fmt: skip
async def test_pages_without_a_session_are_401_or_303_and_show_nothing(env: Env, path: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(env.url + path, allow_redirects=False) as answer:
            assert answer.status == 401
            assert answer.content_type == "application/problem+json"
        browser = {"Accept": "text/html,application/xhtml+xml"}
        async with http.get(env.url + path, headers=browser, allow_redirects=False) as answer:
            assert answer.status == 303
            assert answer.headers["Location"].startswith("/console/signin?next=/console")
            assert await answer.text() == ""
        garbage = {"Cookie": "orchestrator_console=" + "A" * 43} | browser
        async with http.get(env.url + path, headers=garbage, allow_redirects=False) as answer:
            assert answer.status == 303


async def _end(
    http: aiohttp.ClientSession,
    env: Env,
    call_id: uuid.UUID,
    headers: dict[str, str] | None = None,
    **form: str,
) -> aiohttp.ClientResponse:
    async with http.post(
        f"{env.url}/console/calls/{call_id}/end", data=form, allow_redirects=False, headers=headers
    ) as answer:
        await answer.read()
        return answer


async def operator_actions(db: asyncpg.Connection, call_id: uuid.UUID) -> list[Any]:
    return list(
        await db.fetch(
            "select actor, actor_id, detail from public.call_audit"
            " where call_id = $1 and event = 'operator_action'",
            call_id,
        )
    )


async def test_actions_need_the_sessions_csrf_token_and_are_audited(env: Env) -> None:
    call_id = await c.live_call(env.db)
    http, csrf = await signed_in(env, env.people.operator_email)
    other, other_csrf = await signed_in(env, env.people.operator_email)
    try:
        refused = [
            await _end(http, env, call_id, reason="failed"),
            await _end(http, env, call_id, reason="failed", csrf_token="0" * 64),
            await _end(http, env, call_id, reason="failed", csrf_token=other_csrf),
            await _end(
                http,
                env,
                call_id,
                {"Origin": "http://evil.example"},
                reason="failed",
                csrf_token=csrf,
            ),
        ]
        async with aiohttp.ClientSession() as anonymous:
            refused.append(await _end(anonymous, env, call_id, reason="failed", csrf_token=csrf))
        assert [r.status for r in refused] == [403] * 5
        assert await env.db.fetchval("select status from public.calls where id = $1", call_id) == (
            "accepted"
        )
        assert await operator_actions(env.db, call_id) == []

        wrong = await _end(http, env, call_id, reason="declined", csrf_token=csrf)
        assert wrong.status == 409  # not a reason an operator may give: nothing changed
        ours = {"Origin": env.url}  # what a browser sends with our own form
        done = await _end(http, env, call_id, ours, reason="failed", csrf_token=csrf)
        assert (
            done.status == 303 and done.headers["Location"] == f"/console/calls/{call_id}?done=end"
        )
        row = await env.db.fetchrow(
            "select status, end_reason from public.calls where id = $1", call_id
        )
        assert (row["status"], row["end_reason"]) == ("ended", "failed")
        [action] = await operator_actions(env.db, call_id)
        assert action["actor"] == "operator" and action["actor_id"] == env.people.operator
        detail = json.loads(action["detail"])
        assert detail == {"operator": str(env.people.operator), "via": "console",
                          "action": "end", "end_reason": "failed"}  # fmt: skip
        ended = await env.db.fetchrow(
            "select actor, detail from public.call_audit"
            " where call_id = $1 and event = 'call_ended'",
            call_id,
        )
        assert ended["actor"] == "operator"
        assert json.loads(ended["detail"])["operator"] == str(env.people.operator)

        async with http.post(
            f"{env.url}/console/calls/{call_id}/redrive",
            data={"csrf_token": csrf},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 303
        actions = await operator_actions(env.db, call_id)
        assert [json.loads(a["detail"])["action"] for a in actions] == ["end", "redrive"]
    finally:
        await http.close()
        await other.close()


async def test_logout_and_an_ended_supabase_session_end_the_console_session(env: Env) -> None:
    http, csrf = await signed_in(env, env.people.operator_email)
    try:
        async with http.get(env.url + "/console", allow_redirects=False) as answer:
            assert answer.status == 200
            assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
        async with http.post(
            env.url + "/console/logout", data={"csrf_token": csrf}, allow_redirects=False
        ) as answer:
            assert answer.status == 303
        async with http.get(env.url + "/console", allow_redirects=False) as answer:
            assert answer.status == 401
    finally:
        await http.close()

    # A Supabase logout (its auth.sessions row goes) ends the console session too.
    user_id = await env.db.fetchval(
        "insert into auth.users (email) values ('gone@x.test') returning id"
    )
    session_id = await create_session(env.db, user_id)
    env.auth.add("gone@x.test", c.PASSWORD, user_id, session_id, operator=True)
    http, _ = await signed_in(env, "gone@x.test")
    try:
        await env.db.execute("delete from auth.sessions where id = $1", session_id)
        async with http.get(env.url + "/console", allow_redirects=False) as answer:
            assert answer.status == 401
    finally:
        await http.close()


async def test_pages_find_calls_and_users_and_never_show_device_tokens(env: Env) -> None:
    caller, callee = await c.new_user(env.db, "gina"), await c.new_user(env.db, "hal")
    token = c.ANDROID_TOKEN + uuid.uuid4().hex
    await add_device(env.db, callee, "android", token=token)
    call_id = await insert_call(env.db, caller, callee)
    email = await env.db.fetchval("select email from auth.users where id = $1", callee)
    http, _ = await signed_in(env, env.people.operator_email)
    try:
        async with http.get(f"{env.url}/console/find?q={call_id}", allow_redirects=False) as a:
            assert a.headers["Location"] == f"/console/calls/{call_id}"
        async with http.get(
            f"{env.url}/console/find?q={email.upper()}", allow_redirects=False
        ) as a:
            assert a.headers["Location"] == f"/console/users/{callee}"
        async with http.get(f"{env.url}/console/users/{callee}") as a:
            assert a.status == 200 and str(call_id) in await a.text()
        async with http.get(f"{env.url}/console/calls/{call_id}") as a:
            page = await a.text()
            assert a.status == 200 and "Call placed — ringing" in page
        async with http.get(f"{env.url}/console") as a:
            now = await a.text()
            assert str(call_id) in now and "Prune brake" in now and "Queue" in now
            assert "The worker in this process" not in now  # `serve` runs no worker
        assert token not in page and token not in now
        for unknown in (f"/console/calls/{uuid.uuid4()}", f"/console/users/{uuid.uuid4()}"):
            async with http.get(env.url + unknown) as a:
                assert a.status == 404
    finally:
        await http.close()


async def test_a_revoked_role_ends_the_console_session_at_once(
    pg_server_dsn: str, template_db: str, tmp_path: Path
) -> None:
    """Where auth.users has raw_app_meta_data (Supabase; the emulation lacks it), the console
    re-reads the role on every request: revoking it ends the session and old tokens get none."""
    auth = await FakePasswordAuth(c.JWT_SECRET, ttl=600).start()
    try:
        async with c.own_database(pg_server_dsn, template_db) as dsn:
            db = await asyncpg.connect(dsn)
            try:
                await db.execute(
                    "alter table auth.users add column raw_app_meta_data jsonb"
                    " not null default '{}'::jsonb"
                )
                found = await c.people(db, auth)
                role = '{"provider": "email", "orchestrator_role": "operator"}'
                await db.execute(
                    "update auth.users set raw_app_meta_data = $2::jsonb where id = $1",
                    found.operator,
                    role,
                )
                async with c.console_server(dsn, auth.url, tmp_path / "serve.log") as server:
                    env = Env(server.url, dsn, auth, found, db)
                    http, _ = await signed_in(env, found.operator_email)
                    try:
                        await db.execute(
                            "update auth.users set raw_app_meta_data ="
                            " raw_app_meta_data - 'orchestrator_role' where id = $1",
                            found.operator,
                        )
                        async with http.get(server.url + "/console") as answer:
                            assert answer.status == 401
                    finally:
                        await http.close()
                    token = auth.token_for(found.operator_email)  # still claims the role
                    async with (
                        aiohttp.ClientSession() as fresh,
                        fresh.post(
                            server.url + "/console/session",
                            headers={"Authorization": f"Bearer {token}"},
                        ) as answer,
                    ):
                        assert answer.status == 401
            finally:
                await db.close()
    finally:
        await auth.stop()


async def test_worker_serve_hosts_the_console_too(
    pg_server_dsn: str, template_db: str, tmp_path: Path
) -> None:
    auth = await FakePasswordAuth(c.JWT_SECRET, ttl=600).start()
    try:
        async with c.own_database(pg_server_dsn, template_db) as dsn:
            db = await asyncpg.connect(dsn)
            try:
                found = await c.people(db, auth)
                async with c.console_server(
                    dsn, auth.url, tmp_path / "worker.log", "worker", "--serve",
                    PUSH_DRY_RUN="1", METRICS_PORT="0",
                ) as server:  # fmt: skip
                    env = Env(server.url, dsn, auth, found, db)
                    await c.live_call(db)  # work for the worker: its metrics show up
                    http, _ = await signed_in(env, found.operator_email)
                    try:

                        async def worker_shown() -> bool:
                            async with http.get(server.url + "/console") as answer:
                                assert answer.status == 200
                                page = await answer.text()
                            assert "Ringing and in progress" in page
                            return "The worker in this process: brake off" in page

                        await wait_for(worker_shown, timeout=15, interval=0.2)
                    finally:
                        await http.close()
            finally:
                await db.close()
    finally:
        await auth.stop()


async def test_why_it_did_not_ring_is_answered_on_the_call_page(env: Env) -> None:
    """Three tickets: no device, a block, nobody answered — the page says which, in words."""
    async with running_worker(env.dsn, RING_TIMEOUT_SECONDS="2"):
        caller = await c.new_user(env.db, "ivy")
        no_device = await c.new_user(env.db, "jack")
        blocker = await c.new_user(env.db, "kim")
        await add_device(env.db, blocker, "android", token=c.ANDROID_TOKEN + uuid.uuid4().hex)
        await env.db.execute(
            "insert into public.call_blocks (blocker_id, blocked_id) values ($1, $2)",
            blocker,
            caller,
        )
        sleeper = await c.new_user(env.db, "lou")
        await add_device(env.db, sleeper, "android", token=c.ANDROID_TOKEN + uuid.uuid4().hex)
        calls = {}
        for callee in (no_device, blocker, sleeper):
            calls[callee] = await insert_call(env.db, caller, callee)

            async def ended(call_id: uuid.UUID = calls[callee]) -> bool:
                status = await env.db.fetchval(
                    "select status from public.calls where id = $1", call_id
                )
                return bool(status == "ended")

            await wait_for(ended, timeout=15, interval=0.1)
    http, _ = await signed_in(env, env.people.operator_email)
    try:
        explained = {}
        for callee, call_id in calls.items():
            async with http.get(f"{env.url}/console/calls/{call_id}") as answer:
                page = await answer.text()
            explained[callee] = page.split('id="explanation">', 1)[1].split("</p>", 1)[0]
    finally:
        await http.close()
    assert explained[no_device].startswith("unreachable: the callee has no ring-capable device")
    assert explained[blocker].startswith("unreachable: the callee has blocked the caller")
    assert explained[sleeper] == (
        "missed: nobody answered within 2.0 s; 0 of 1 device acknowledged the ring."
    )
