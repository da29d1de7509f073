"""Node and npm for the TypeScript client kit's tests: find them, `npm ci`, compile, run.

Missing node/npm skips (and is listed) outside CI and fails under CI=true, like every
service. `npm ci` runs once per lockfile change (a stamp beside node_modules), so repeated
local runs do not reinstall; a fresh clone (CI) always installs from the committed lockfile.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from tests.support.services import require

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "clients" / "typescript"
DOCS_CHECK = KIT / "docs-check"
MIN_NODE_MAJOR = 18


def require_node() -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    require("node", node is not None and npm is not None, "`node` and `npm` are not on PATH")
    version = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    major = int(version.lstrip("v").split(".")[0])
    require("node", major >= MIN_NODE_MAJOR, f"node {version} is older than {MIN_NODE_MAJOR}")


def run(cmd: list[str], cwd: Path, timeout: float = 600, **env: str) -> str:
    """Run and return stdout+stderr; a non-zero exit fails with the output."""
    done = subprocess.run(
        cmd,
        cwd=cwd,
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{output[-6000:]}"
    return output


def npm_ci(package: Path) -> None:
    """`npm ci` from the committed lockfile (again only when the lockfile changed)."""
    lock = package / "package-lock.json"
    assert lock.exists(), f"{lock} must be committed"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    stamp = package / "node_modules" / ".ci-stamp"
    # One installer at a time (a second test process, or a second run in this checkout):
    # two `npm ci` in one folder delete each other's files. The kit's tests are also one
    # xdist_group, so under `make test` this lock is never contended.
    with (package / ".npm-ci.lock").open("a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == digest:
            return
        # --ignore-scripts: nothing here needs an install script, and none should run in tests.
        run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], package, timeout=900)
        stamp.write_text(digest)


async def node_test(path: Path, timeout: float = 180, *extra: str, **env: str) -> str:
    """`node --test` without blocking the event loop (our fakes answer from it meanwhile)."""
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        "node",
        "--test",
        "--test-reporter=spec",
        *extra,
        str(path),
        cwd=KIT,
        env=os.environ | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        stdout, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        raise
    output = stdout.decode()
    assert proc.returncode == 0, output[-8000:]
    assert "fail 0" in output, output[-8000:]
    return output


def compile_kit() -> Path:
    """src + test compiled (strict) into build/."""
    require_node()
    npm_ci(KIT)
    run(["npx", "--no-install", "tsc", "-p", "tsconfig.json"], KIT)
    return KIT / "build"
