"""Finding the real services the tests use; skip (or fail under CI=true) when one is absent."""

from __future__ import annotations

import os
import shutil
import socket

import pytest

UNAVAILABLE: dict[str, str] = {}  # service -> why, listed in the terminal summary


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require(service: str, available: bool, why: str) -> None:
    """Skip outside CI, fail under CI, when a service's binary or server is missing."""
    if available:
        return
    UNAVAILABLE[service] = why
    if in_ci():
        pytest.fail(f"{service} is required under CI=true: {why}")
    pytest.skip(f"{service} unavailable: {why}")


def require_binary(name: str) -> str:
    path = shutil.which(name)
    require(name, path is not None, f"`{name}` is not on PATH")
    assert path is not None
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
