"""The worker's `/healthz`, `/readyz` and `/metrics` on METRICS_PORT."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from orchestrator.logs import get_logger
from orchestrator.metrics import Metrics

log = get_logger("orchestrator.health")
ReadyCheck = Callable[[], Awaitable[dict[str, bool]]]
LiveCheck = Callable[[], bool]


def build_health_app(
    metrics: Metrics, ready: ReadyCheck, live: LiveCheck | None = None
) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        # 503 only when the engine loop is stuck: a restart helps then, and only then.
        if live is not None and not live():
            return web.json_response({"status": "stuck", "checks": {"loop": False}}, status=503)
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks = await ready()
        ok = all(checks.values())
        return web.json_response(
            {"status": "ready" if ok else "unavailable", "checks": checks},
            status=200 if ok else 503,
        )

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    return app


async def start_health_server(
    metrics: Metrics, ready: ReadyCheck, host: str, port: int, *, live: LiveCheck | None = None
) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(
        build_health_app(metrics, ready, live), access_log=None, handle_signals=False
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = [a[1] for a in runner.addresses if isinstance(a, tuple)]
    actual = bound[0] if bound else port
    log.info("metrics_listening", port=actual)
    return runner, actual
