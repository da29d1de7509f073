"""The call inspector console under /console (contract: "Console"). `add_routes` puts it on
the token server's application, so `orchestrator serve` and `worker --serve` both have it."""

from __future__ import annotations

from aiohttp import web

from orchestrator.console import actions, views

__all__ = ["add_routes"]


def add_routes(app: web.Application) -> None:
    router = app.router
    for path, handler in (
        ("/console", views.now),
        ("/console/now/fragment", views.now_fragment),
        ("/console/signin", views.signin),
        ("/console/find", views.find),
        ("/console/calls/{call_id}", views.call),
        ("/console/users/{user_id}", views.user),
        ("/console/static/console.js", views.script),
        ("/console/static/console.css", views.style),
    ):
        router.add_get(path, handler, allow_head=False)
    router.add_post("/console/session", actions.start_session)
    router.add_post("/console/logout", actions.logout)
    router.add_post("/console/calls/{call_id}/end", actions.end_call)
    router.add_post("/console/calls/{call_id}/redrive", actions.redrive)
