"""The console in a real headless Chromium against a running `orchestrator serve`, the real
worker and the real database: sign-in through (fake) Supabase Auth, a timeline read in order,
a live call ended from the page, refusals, and a forged cross-site POST.

Screenshots (laptop and phone widths) land in the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.fakes.supabase_password import FakePasswordAuth
from tests.support import console as c
from tests.support.browser import LAPTOP, PHONE, Browser, require_browser
from tests.support.services import free_port
from tests.support.worker import running_worker

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(240)]


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
    require_browser()
    auth = await FakePasswordAuth(c.JWT_SECRET).start()
    log = tmp_path_factory.mktemp("console-browser") / "serve.log"
    async with c.own_database(pg_server_dsn, template_db) as dsn:
        db = await asyncpg.connect(dsn)
        try:
            found = await c.people(db, auth)
            async with c.console_server(dsn, auth.url, log) as server:
                yield Env(server.url, dsn, auth, found, db)
        finally:
            await db.close()
            await auth.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium, driver = require_browser()
    started = await asyncio.to_thread(Browser, chromium, driver)
    try:
        yield started
    finally:
        await started.quit()


async def sign_in(b: Browser, env: Env, email: str, start: str = "/console") -> None:
    """The sign-in page: email + password to Supabase Auth in the browser, then the session."""
    await b.get(env.url + start)
    await b.wait("#signin-password")
    assert "/console/signin" in await b.url()
    await b.fill("#signin-password input[name=email]", email)
    await b.fill("#signin-password input[name=password]", c.PASSWORD)
    await b.click("#signin-password button[type=submit]")


async def test_operator_reads_the_timeline_and_ends_a_live_call(
    env: Env, browser: Browser, tmp_path: Path
) -> None:
    async with running_worker(env.dsn, RING_TIMEOUT_SECONDS="30"):
        call = await c.declined_call(env.db)
        live = await c.live_call(env.db)

        await sign_in(browser, env, env.people.operator_email, f"/console/calls/{call.call_id}")
        await browser.wait("#timeline")  # back on the page first asked for
        assert await browser.url() == f"{env.url}/console/calls/{call.call_id}"
        kinds = await browser.attrs("tr.event", "data-kind")
        labels = await browser.texts("tr.event td.hit")
        events = list(zip(kinds, labels, strict=True))
        wanted = [
            ("call_created", "Call placed — ringing"),
            ("push_sent", "Ring sent via log to android ·"),
            ("push_sent", "Ring sent via log to ios ·"),
            ("ack", "Ring shown on android ·"),
            ("call_ended", "Ended: declined (by the callee)"),
            ("push_sent", "Stop sent via log to android ·"),
        ]
        # the two rings may go out in either order; everything else in exactly this order
        order = sorted(
            wanted[1:3], key=lambda w: next(i for i, e in enumerate(events) if w[1] in e[1])
        )
        wanted[1:3] = order
        position = [
            next(i for i, (k, t) in enumerate(events) if k == w[0] and w[1] in t) for w in wanted
        ]
        assert position == sorted(position), events
        assert all(
            k in {"call_created", "push_sent", "ack", "call_ended", "token_issued"}
            for k, _ in events
        )
        explanation = (await browser.texts("#explanation"))[0]
        assert explanation.startswith("declined: the callee declined after")
        assert "1 of 2 devices acknowledged the ring" in explanation
        page = await browser.source()
        for secret in (c.ANDROID_TOKEN, c.IOS_VOIP_TOKEN[:-8], c.IOS_ALERT_TOKEN[:-8]):
            assert secret not in page
        await browser.screenshot(tmp_path / "timeline-laptop.png", LAPTOP)
        await browser.screenshot(tmp_path / "timeline-phone.png", PHONE)

        # "Now": the live call is listed, and the page refreshes itself without a reload.
        await browser.get(env.url + "/console")
        await browser.wait("#live", str(live))
        await browser.wait("#refreshed", "refreshed", timeout=20)
        await browser.wait("#time-to-ring", "log")
        await browser.screenshot(tmp_path / "now-laptop.png", LAPTOP)
        await browser.screenshot(tmp_path / "now-phone.png", PHONE)

        # Find the live call by id and end it from its page.
        await browser.fill("header input[name=q]", str(live))
        await browser.click("header form[action='/console/find'] button")
        await browser.wait("#actions select[name=reason]")
        await browser.select("#actions select[name=reason]", "failed")
        await browser.click("#actions button.danger", accept_confirm=True)
        await browser.wait(".message", "The call was ended.")
        await browser.wait("#timeline", f"Operator {env.people.operator_email}: end (failed)")
        await browser.wait("#explanation", "failed: an operator ended the call as failed")
        await browser.screenshot(tmp_path / "ended-laptop.png", LAPTOP)

    row = await env.db.fetchrow(
        "select actor, actor_id, detail from public.call_audit"
        " where call_id = $1 and event = 'operator_action'",
        live,
    )
    assert row["actor"] == "operator" and row["actor_id"] == env.people.operator
    assert json.loads(row["detail"])["end_reason"] == "failed"
    status = await env.db.fetchrow(
        "select status, end_reason from public.calls where id = $1", live
    )
    assert tuple(status) == ("ended", "failed")


async def test_a_non_operator_is_refused(env: Env, browser: Browser, tmp_path: Path) -> None:
    live = await c.live_call(env.db)
    await sign_in(browser, env, env.people.outsider_email)
    await browser.wait("#signin-message", "not an operator")
    await browser.screenshot(tmp_path / "signin-refused-phone.png", PHONE)
    await browser.get(f"{env.url}/console/calls/{live}")
    await browser.wait("#signin-password")
    assert "/console/signin" in await browser.url()
    assert "accepted" not in " ".join(await browser.texts("main"))
    assert env.people.outsider_email in env.auth.grants  # it did sign in to Supabase


async def test_a_signed_out_browser_sees_no_data(env: Env, browser: Browser) -> None:
    live = await c.live_call(env.db)
    callee = await env.db.fetchval("select callee_id from public.calls where id = $1", live)
    for path in ("/console", f"/console/calls/{live}", f"/console/users/{callee}"):
        await browser.get(env.url + path)
        await browser.wait("#signin-password")
        main = " ".join(await browser.texts("main"))
        assert str(live) not in main and "Ringing and in progress" not in main


async def forged_page(target: str) -> tuple[web.AppRunner, int]:
    """Another site's page that auto-submits an end-call form to the console."""
    html = (
        f'<!doctype html><form id="f" method="post" action="{target}">'
        '<input name="reason" value="failed"><input name="csrf_token" value="guessed"></form>'
        "<script>document.getElementById('f').submit()</script>"
    )

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def test_a_forged_cross_site_post_is_refused(env: Env, browser: Browser) -> None:
    live = await c.live_call(env.db)
    await sign_in(browser, env, env.people.operator_email)
    await browser.wait("#live")  # signed in: the cookie is in the browser
    runner, port = await forged_page(f"{env.url}/console/calls/{live}/end")
    try:
        # localhost is another site (SameSite=Strict keeps the cookie home); 127.0.0.1 on
        # another port is the same site but another origin (the cookie goes, the CSRF fails).
        for origin in (f"http://localhost:{port}/", f"http://127.0.0.1:{port}/"):
            await browser.get(origin)
            await browser.wait("main", "Refused")
            assert await browser.url() == f"{env.url}/console/calls/{live}/end"
    finally:
        await runner.cleanup()

    status = await env.db.fetchval("select status from public.calls where id = $1", live)
    assert status == "accepted"
    assert not await env.db.fetchval(
        "select count(*) from public.call_audit where call_id = $1 and event = 'operator_action'",
        live,
    )
    # the browser's session itself still works: the refusal was the forged request's
    await browser.get(env.url + "/console")
    await browser.wait("#live", str(live))


async def test_read_only_pages_work_with_javascript_disabled(env: Env) -> None:
    chromium, driver = require_browser()
    b = await asyncio.to_thread(Browser, chromium, driver, javascript=False)
    try:
        call = await c.live_call(env.db)
        async with aiohttp.ClientSession() as http:  # sign-in itself needs the script
            token = env.auth.token_for(env.people.operator_email)
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post(env.url + "/console/session", headers=headers) as answer:
                assert answer.status == 204
                cookie = answer.cookies["orchestrator_console"].value
        await b.get(env.url + "/console/signin")
        assert "Signing in needs JavaScript" in " ".join(await b.texts("main"))
        await b.add_cookie("orchestrator_console", cookie, "/console")
        await b.get(env.url + "/console")
        await b.wait("#live", str(call))
        await b.fill("header input[name=q]", str(call))
        await b.click("header form[action='/console/find'] button")
        await b.wait("#explanation", "Not ended yet.")
        kinds = await b.attrs("tr.event", "data-kind")
        assert kinds[:2] == ["call_created", "call_accepted"]
        assert "Answered" in " ".join(await b.texts("tr.event td.hit"))
    finally:
        await b.quit()
