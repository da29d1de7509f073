"""The Agora token server: `orchestrator serve`, or in the worker (`orchestrator worker --serve`).

`build_app` wires the aiohttp application, `start_site` listens (HTTPS when TLS_CERT_FILE and
TLS_KEY_FILE are set) in the caller's event loop, and `serve` runs it alone until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl

import asyncpg
from aiohttp import web

from orchestrator.adapters.agora.token_builder import VERSIONS, TokenInputError, check_credentials
from orchestrator.adapters.auth.jwt_verifier import SupabaseVerifier, Verifier, VerifierConfig
from orchestrator.adapters.postgres.pool import create_pool
from orchestrator.adapters.ratelimit.limiter import RateLimiter
from orchestrator.config import ConfigError, Settings
from orchestrator.console import add_routes as add_console_routes
from orchestrator.logs import get_logger
from orchestrator.metrics import Metrics
from orchestrator.tokenserver import handlers, ncs
from orchestrator.tokenserver.middleware import TOKEN_ROUTE, request_middleware
from orchestrator.tokenserver.openapi import TOKEN_PATH
from orchestrator.tokenserver.state import SERVER, Limits, TokenServer

__all__ = ["Limits", "build_app", "serve", "start_site", "web_pool"]

log = get_logger("orchestrator.server")
SEED_TTL_RANGE = (120, 300)


def _agora_credentials(settings: Settings) -> tuple[str, str]:
    app_id, app_cert = settings.require_agora()
    try:
        check_credentials(app_id, app_cert)
    except TokenInputError as exc:
        raise ConfigError(f"AGORA_APP_ID/AGORA_APP_CERT: {exc}") from None
    if settings.agora_token_version not in VERSIONS:
        raise ConfigError("AGORA_TOKEN_VERSION must be 007 or 006")
    return app_id, app_cert


def build_app(
    settings: Settings,
    pool: asyncpg.Pool,
    metrics: Metrics,
    *,
    verifier: Verifier | None = None,
    limiter: RateLimiter | None = None,
    limits: Limits | None = None,
    ncs_limits: ncs.NcsLimits | None = None,
) -> web.Application:
    """The token server's application; validates its configuration (ConfigError) first."""
    app_id, app_cert = _agora_credentials(settings)
    low, high = SEED_TTL_RANGE
    if not low <= settings.token_ttl_seconds <= high:
        log.warning(
            "token_ttl_outside_recommended_range",
            token_ttl_seconds=settings.token_ttl_seconds,
            recommended=f"{low}-{high}",
        )
    if settings.presence_agora and not settings.agora_ncs_secret:
        log.warning("ncs_secret_missing", detail="PRESENCE_SOURCE uses agora: set AGORA_NCS_SECRET")
    owns_verifier = verifier is None
    if verifier is None:
        verifier = SupabaseVerifier(VerifierConfig.from_settings(settings))
    limits = limits or Limits()
    app = web.Application(middlewares=[request_middleware], client_max_size=limits.max_body_bytes)
    app[SERVER] = TokenServer(
        settings=settings,
        pool=pool,
        metrics=metrics,
        verifier=verifier,
        limiter=limiter or RateLimiter.from_settings(settings),
        limits=limits,
        app_id=app_id,
        app_cert=app_cert,
        owns_verifier=owns_verifier,
    )
    app.router.add_post(TOKEN_PATH, handlers.agora_token, name=TOKEN_ROUTE)
    app.router.add_route("OPTIONS", TOKEN_PATH, handlers.preflight)
    ncs.add_routes(app, ncs_limits)  # POST /v1/agora/events (presence, docs/presence.md)
    for path, handler in (
        ("/healthz", handlers.healthz),
        ("/readyz", handlers.readyz),
        ("/metrics", handlers.metrics),
        ("/openapi.json", handlers.openapi),
    ):
        app.router.add_get(path, handler, allow_head=False)
    add_console_routes(app)  # /console: the call inspector
    app.on_cleanup.append(_close)
    return app


async def _close(app: web.Application) -> None:
    server = app[SERVER]
    if server.owns_verifier:
        await server.verifier.close()


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if not (settings.tls_cert_file and settings.tls_key_file):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


async def start_site(app: web.Application, settings: Settings) -> web.AppRunner:
    """Listen on HOST:PORT in the running loop; the caller awaits `runner.cleanup()` to stop."""
    limits = app[SERVER].limits
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,  # the middleware writes one structured line per request
        shutdown_timeout=limits.shutdown_timeout,
        keepalive_timeout=limits.keepalive_timeout,
        max_line_size=limits.max_line_size,
        max_field_size=limits.max_field_size,
        max_headers=limits.max_headers,
    )
    await runner.setup()
    context = tls_context(settings)
    site = web.TCPSite(runner, settings.host, settings.port, ssl_context=context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    ports = [address[1] for address in runner.addresses if isinstance(address, tuple)]
    log.info("token_server_listening", host=settings.host, ports=ports, tls=context is not None)
    return runner


async def web_pool(settings: Settings) -> asyncpg.Pool:
    """The token server's pool. Each request is one transaction with no session state, so it
    also runs behind a transaction pooler: no named prepared statements (another client's
    would collide with ours there)."""
    return await create_pool(
        settings.require_database(),
        size=settings.db_pool_size,
        name="orchestrator-web",
        min_size=0,  # start even while the database is down; /readyz tells
        statement_cache_size=0,
    )


async def serve(settings: Settings) -> None:
    """Run the token server alone until cancelled or SIGTERM/SIGINT."""
    pool = await web_pool(settings)
    try:
        runner = await start_site(build_app(settings, pool, Metrics()), settings)
        try:
            await _until_stopped()
        finally:
            await runner.cleanup()
    finally:
        await pool.close()
    log.info("token_server_stopped")


async def _until_stopped() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
