"""Real processes: `python -m orchestrator worker` / `serve`, readiness, RSS and CPU meters."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil

from bench.config import REPO
from orchestrator.config import VARIABLES

# Configuration the bench decides for its processes, never inherited from the caller's shell.
CONFIG_VARIABLES = (
    *VARIABLES,
    "BENCH_PROBE_OUT",
    "BENCH_PROFILE_OUT",
    "BENCH_STORE_TIMING",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def environment(**env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in CONFIG_VARIABLES}
    return {**base, "LOG_FORMAT": "json", "LOG_LEVEL": "warning", "HOST": "127.0.0.1", **env}


@dataclass
class Proc:
    """A child process of the bench with its log file and a readiness URL."""

    name: str
    proc: asyncio.subprocess.Process
    log_path: Path
    ready_url: str
    ps: psutil.Process = field(init=False)

    def __post_init__(self) -> None:
        self.ps = psutil.Process(self.proc.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    break
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with http.get(
                        self.ready_url, timeout=aiohttp.ClientTimeout(total=1)
                    ) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become ready:\n{self.log_tail()}")

    def rss(self) -> int:
        try:
            return int(self.ps.memory_info().rss)
        except psutil.Error:
            return 0

    def cpu_seconds(self) -> float:
        try:
            times = self.ps.cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    async def stop(self, timeout: float = 20.0) -> int:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        return int(self.proc.returncode or 0)


_logs: Path | None = None


def logs_folder() -> Path:
    """Every child process's output (kept after a failed run, for the post-mortem)."""
    global _logs
    if _logs is None:
        _logs = Path(tempfile.mkdtemp(prefix="orchestrator-bench-logs-"))
    return _logs


def remove_logs() -> None:
    if _logs is not None:
        shutil.rmtree(_logs, ignore_errors=True)


async def _spawn(name: str, args: list[str], env: dict[str, str], ready_url: str) -> Proc:
    log_path = logs_folder() / f"{name}-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, env=env, cwd=REPO, stdout=log, stderr=asyncio.subprocess.STDOUT
        )
    return Proc(name, proc, log_path, ready_url)


async def start_worker(dsn: str, worker_id: str, *, probe: bool = False, **env: str) -> Proc:
    """`python -m orchestrator worker` (or the probe wrapper: the same run_worker plus an
    RSS/task sampler and an optional profile), ready once /readyz answers 200."""
    port = free_port()
    env_vars = environment(
        **{
            "DATABASE_URL": dsn,
            "METRICS_PORT": str(port),
            "WORKER_ID": worker_id,
            "PUSH_DRY_RUN": "1",
            **env,
        }
    )
    args = ["-m", "bench.probe_worker"] if probe else ["-m", "orchestrator", "worker"]
    worker = await _spawn(worker_id, args, env_vars, f"http://127.0.0.1:{port}/readyz")
    try:
        await worker.wait_ready()
    except BaseException:
        await worker.stop(5)
        raise
    return worker


async def start_workers(dsn: str, n: int, prefix: str = "w", **env: str) -> list[Proc]:
    return list(
        await asyncio.gather(*(start_worker(dsn, f"{prefix}{i + 1}", **env) for i in range(n)))
    )


async def stop_all(procs: list[Proc]) -> list[int]:
    return list(await asyncio.gather(*(p.stop() for p in procs)))


async def start_token_server(dsn: str, **env: str) -> tuple[Proc, str]:
    port = free_port()
    env_vars = environment(DATABASE_URL=dsn, PORT=str(port), **env)
    base = f"http://127.0.0.1:{port}"
    server = await _spawn("serve", ["-m", "orchestrator", "serve"], env_vars, f"{base}/readyz")
    try:
        await server.wait_ready()
    except BaseException:
        await server.stop(5)
        raise
    return server, base


def postgres_processes() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info.get("name") in ("postgres", "postgres.exe"):
            found.append(proc)
    return found


class CpuMeter:
    """CPU used during a window: the whole machine, PostgreSQL, the bench and its workers."""

    def __init__(self, workers: list[Proc] | None = None) -> None:
        self.workers = workers or []
        self._me = psutil.Process()

    def _pg(self) -> dict[int, float]:
        result = {}
        for proc in postgres_processes():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                result[proc.pid] = t.user + t.system
        return result

    def __enter__(self) -> CpuMeter:
        self.started = time.monotonic()
        self._machine = psutil.cpu_times()
        self._pg0 = self._pg()
        me = self._me.cpu_times()
        self._me0 = me.user + me.system
        self._w0 = [w.cpu_seconds() for w in self.workers]
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.monotonic() - self.started
        machine = psutil.cpu_times()
        busy = lambda t: t.user + t.nice + t.system + t.irq + t.softirq + t.steal  # noqa: E731
        total = lambda t: busy(t) + t.idle + t.iowait  # noqa: E731
        span = total(machine) - total(self._machine)
        self.machine_busy = (busy(machine) - busy(self._machine)) / span if span else 0.0
        pg1 = self._pg()
        self.postgres = sum(v - self._pg0.get(pid, 0.0) for pid, v in pg1.items())
        me = self._me.cpu_times()
        self.bench = me.user + me.system - self._me0
        self.worker = sum(
            w.cpu_seconds() - w0 for w, w0 in zip(self.workers, self._w0, strict=True)
        )

    def as_dict(self) -> dict[str, float]:
        s = self.seconds or 1.0
        return {
            "machine_busy_pct": round(100 * self.machine_busy, 1),
            "cores": psutil.cpu_count() or 0,
            "postgres_cores": round(self.postgres / s, 2),
            "worker_cores": round(self.worker / s, 2),
            "bench_cores": round(self.bench / s, 2),
        }
