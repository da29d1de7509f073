"""Small typed parsers for environment variables; every error names the variable and the rule."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
RATE = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(second|minute|hour|day)s?\s*$", re.IGNORECASE)
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A configuration variable is missing or malformed; the message names it and the rule."""


class Env:
    """Reads variables from a mapping; empty strings count as unset."""

    def __init__(self, source: Mapping[str, str]) -> None:
        self._source = source

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self._source.get(name)
        if value is None or value.strip() == "":
            return default
        return value.strip()

    def is_set(self, name: str) -> bool:
        return self.text(name) is not None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
        return value

    def number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
        return value

    def flag(self, name: str, default: bool | None) -> bool | None:
        raw = self.text(name)
        if raw is None:
            return default
        if raw.lower() in TRUE:
            return True
        if raw.lower() in FALSE:
            return False
        raise ConfigError(f"{name} must be 1/0 (or true/false), got {raw!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        raw = self.text(name, default)
        assert raw is not None
        if raw.lower() not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return raw.lower()

    def hex32(self, name: str) -> str | None:
        raw = self.text(name)
        if raw is not None and not HEX32.match(raw):
            # Never echo the value: it may be the Agora certificate.
            raise ConfigError(f"{name} must be exactly 32 hexadecimal characters")
        return raw

    def rate(self, name: str, default: str) -> str:
        raw = self.text(name, default)
        assert raw is not None
        if not RATE.match(raw):
            raise ConfigError(f"{name} must look like '30/minute' (second|minute|hour|day)")
        return raw

    def url(self, name: str, schemes: tuple[str, ...], default: str | None = None) -> str | None:
        raw = self.text(name, default)
        if raw is None:
            return None
        parts = urlsplit(raw)
        if parts.scheme not in schemes or not parts.hostname:
            raise ConfigError(f"{name} must be a URL with scheme {'/'.join(schemes)} and a host")
        return raw.rstrip("/")

    def host_port(self, name: str) -> tuple[str, int] | None:
        raw = self.text(name)
        if raw is None:
            return None
        host, sep, port = raw.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name} must be host:port, got {raw!r}")
        return host.strip("[]"), int(port)

    def csv(self, name: str) -> tuple[str, ...]:
        raw = self.text(name, "") or ""
        items = tuple(item.strip() for item in raw.split(",") if item.strip())
        if "*" in items:
            raise ConfigError(f"{name} must list origins explicitly; '*' is not allowed")
        return items
