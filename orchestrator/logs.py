"""Structured logging: JSON (orjson) in production, console on a TTY, secrets always redacted."""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

# Keys whose values are secrets or device identifiers: never logged, whatever the caller passes.
SECRET_KEYS = frozenset(
    {
        "token",
        "voip_token",
        "device_token",
        "authorization",
        "jwt",
        "access_token",
        "agora_token",
        "app_cert",
        "agora_app_cert",
        "certificate",
        "password",
        "secret",
        "apikey",
        "api_key",
        "service_role_key",
        "private_key",
        "key_pem",
        "bearer",
    }
)
# Values that look like secrets even under an innocent key: JWTs and Agora tokens.
SECRET_VALUES = re.compile(
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*|\b00[67][A-Za-z0-9+/=]{40,}"
)
REDACTED = "[redacted]"
# In exception text only: long hex or base64url runs are device tokens, keys or signatures.
TOKEN_LIKE = re.compile(r"[0-9a-fA-F]{32,}|[A-Za-z0-9_:-]{100,}")
TRACEBACK_FRAMES = 8


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return SECRET_VALUES.sub(REDACTED, value)
    if isinstance(value, dict):
        return {k: REDACTED if k.lower() in SECRET_KEYS else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: drop secret keys and scrub secret-looking values everywhere."""
    for key in list(event_dict):
        if key.lower() in SECRET_KEYS:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure(log_format: str = "json", level: str = "info") -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    renderer: Any
    if log_format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # Plain exception text: frame locals (dict_tracebacks) could hold tokens.
                structlog.processors.format_exc_info,
                redact,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # hpack/h2 log raw headers (device tokens, JWTs) at DEBUG: never below WARNING.
    for noisy in ("asyncio", "websockets", "aiohttp.access", "hpack", "h2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The realtime client logs whole raw frames (user ids) on errors; the adapter logs its own.
    logging.getLogger("realtime").setLevel(logging.CRITICAL)
    structlog.configure(
        processors=[
            *shared[:2],
            structlog.stdlib.filter_by_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger


def _clean(text: str) -> str:
    return TOKEN_LIKE.sub(REDACTED, SECRET_VALUES.sub(REDACTED, text))


def exception_fields(exc: BaseException) -> dict[str, str]:
    """Type, message and a traceback (file, line, function, source line; never frame locals),
    with anything token-like redacted: enough to tell a payload bug from provider flakiness."""
    frames = traceback.format_tb(exc.__traceback__, limit=-TRACEBACK_FRAMES)
    return {
        "error": type(exc).__name__,
        "detail": _clean(str(exc))[:300],
        "traceback": _clean("".join(frames))[-4000:],
    }
