"""A private PgBouncer in `pool_mode = {pool_mode}` (Supavisor's port-6543 model), on a free port,
in front of the tests' PostgreSQL. Skipped outside CI (failed under CI=true) without `pgbouncer`.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.services import free_port, port_open, require, require_binary
from tests.support.wait import wait_for

CONFIG = """
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {folder}/userlist.txt
pool_mode = {pool_mode}
default_pool_size = {pool_size}
max_client_conn = 500
ignore_startup_parameters = extra_float_digits,statement_timeout
logfile = {folder}/pgbouncer.log
pidfile = {folder}/pgbouncer.pid
"""


@dataclass
class PgBouncer:
    port: int
    folder: Path
    proc: subprocess.Popen[bytes]

    def dsn(self, direct_dsn: str) -> str:
        """`direct_dsn` (postgresql://user@host:port/db) routed through this pooler."""
        parts = urlsplit(direct_dsn)
        return f"postgresql://{parts.username or 'postgres'}@127.0.0.1:{self.port}{parts.path}"

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text() if path.exists() else ""


def _run_as() -> str | None:
    """PgBouncer refuses to run as root: run it as `postgres` (or nobody) then."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return None


@asynccontextmanager
async def pgbouncer(
    direct_dsn: str, *, pool_size: int = 5, pool_mode: str = "transaction"
) -> AsyncIterator[PgBouncer]:
    binary = require_binary("pgbouncer")
    parts = urlsplit(direct_dsn)
    require("pgbouncer", parts.hostname is not None, "the test database is not on TCP")
    folder = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    user = _run_as()
    listen = free_port()
    (folder / "pgbouncer.ini").write_text(
        CONFIG.format(
            host=parts.hostname,
            port=parts.port or 5432,
            listen=listen,
            folder=folder,
            pool_size=pool_size,
            pool_mode=pool_mode,
        )
    )
    (folder / "userlist.txt").write_text(f'"{parts.username or "postgres"}" ""\n')
    if user is not None:
        shutil.chown(folder, user)
        for path in folder.iterdir():
            shutil.chown(path, user)
    command = [binary, *(["-u", user] if user else []), str(folder / "pgbouncer.ini")]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:

        async def up() -> bool:
            return port_open("127.0.0.1", listen) or proc.poll() is not None

        await wait_for(up, 10)
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"pgbouncer exited: {err} {(folder / 'pgbouncer.log')}")
        yield PgBouncer(listen, folder, proc)
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(asyncio.to_thread(proc.wait), 5)
        except TimeoutError:
            proc.kill()
        shutil.rmtree(folder, ignore_errors=True)
