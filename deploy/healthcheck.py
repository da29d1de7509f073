"""Container HEALTHCHECK: GET /healthz with the standard library (python:3.11-slim has no curl).

With no argument it asks the worker's health server (METRICS_PORT, default 9100) and then the
token server (PORT, default 8080; HTTPS when TLS_CERT_FILE is set) and succeeds when either
answers 200, so the one image fits `orchestrator worker`, `worker --serve` and `serve`.
Arguments are exact URLs to ask instead (compose asks /readyz for `depends_on`).
Exit 0 healthy, 1 not.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request

TIMEOUT_SECONDS = 3.0
ANY_ADDRESS = ("", "0.0.0.0", "::")


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def candidates(argv: list[str]) -> list[str]:
    if argv:
        return argv
    host = _env("HOST", "0.0.0.0")
    host = "127.0.0.1" if host in ANY_ADDRESS else host
    host = f"[{host}]" if ":" in host else host
    urls = []
    metrics_port = _env("METRICS_PORT", "9100")
    if metrics_port != "0":  # 0 means "any free port": nothing to ask
        urls.append(f"http://{host}:{metrics_port}/healthz")
    scheme = "https" if os.environ.get("TLS_CERT_FILE", "").strip() else "http"
    urls.append(f"{scheme}://{host}:{_env('PORT', '8080')}/healthz")
    return urls


def healthy(url: str) -> bool:
    if not url.startswith(("http://", "https://")):
        return False
    # Our own server on the loopback: its certificate names the public host, not 127.0.0.1.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS, context=context) as response:  # noqa: S310 - http(s) only, checked above
            return bool(response.status == 200)
    except (OSError, ValueError):  # refused, timed out, HTTP error status, bad URL
        return False


def main(argv: list[str]) -> int:
    urls = candidates(argv)
    if any(healthy(url) for url in urls):
        return 0
    print("unhealthy: no 200 from " + ", ".join(urls), file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
