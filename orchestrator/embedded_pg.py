"""An embedded PostgreSQL for `demo` and `bench` when DATABASE_URL is not set.

The `pgserver` wheel (CPython 3.11/3.12) first; else the machine's `initdb`/`pg_ctl` in a
private folder on a unix socket.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from orchestrator.logs import get_logger

log = get_logger(__name__)
Stop = Callable[[], None]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _system_postgres(folder: Path) -> tuple[str, Stop]:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        raise RuntimeError(
            "no embedded PostgreSQL: install the pgserver wheel (Python 3.11/3.12) or "
            "PostgreSQL's initdb/pg_ctl, or set DATABASE_URL"
        )
    folder = folder.resolve()
    data, sock = folder / "data", folder / "sock"
    sock.mkdir(parents=True, exist_ok=True)
    # initdb refuses to run as root: run the server as the `postgres` user then.
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if prefix:
        shutil.chown(folder, "postgres")
        shutil.chown(sock, "postgres")
    if not (data / "PG_VERSION").exists():
        subprocess.run(
            [*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust"],
            check=True,
            capture_output=True,
        )
    subprocess.run(
        [
            *prefix,
            pg_ctl,
            "-D",
            str(data),
            "-l",
            str(folder / "log"),
            "-w",
            "-o",
            f"-k {sock} -c listen_addresses='' -p 5439",
            "start",
        ],
        check=True,
        capture_output=True,
    )

    def stop() -> None:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "fast", "stop"],
            check=False,
            capture_output=True,
        )

    return f"postgresql://postgres@/postgres?host={sock}&port=5439", stop


def start(folder: str | Path = ".demo-pg") -> tuple[str, Stop]:
    """Start (or reuse) an embedded server; returns its URI and a function that stops it."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    try:
        import pgserver

        server = pgserver.get_server(  # type: ignore[attr-defined]
            str(path / "pgserver"), cleanup_mode="stop"
        )
        log.info("embedded_postgres", kind="pgserver")
        return str(server.get_uri()), server.cleanup
    except ImportError:
        log.info("embedded_postgres", kind="system initdb/pg_ctl")
        return _system_postgres(path / "system")
