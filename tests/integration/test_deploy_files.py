"""deploy/: the offline validators pass (scripts/check_deploy.sh, also run by `make lint`), and
what no schema knows: non-root numeric USER, a HEALTHCHECK that works against a real worker,
probes on /healthz and /readyz at the ports the processes listen on, a PDB that selects the
worker pods, grace periods longer than SHUTDOWN_GRACE_SECONDS, only placeholder secrets, and
every variable the manifests set documented in deploy/env.example. Without Docker, the image's
`pip install .` is reproduced in a temporary folder and its `migrate` run against a database.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from tests.support.processes import WorkerProcess
from tests.support.services import free_port
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SHUTDOWN_GRACE_DEFAULT = 10.0
OUR_IMAGE_SERVICES = ("migrate", "worker", "web")  # compose services built from our image


# --- helpers ---------------------------------------------------------------------------------


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: comments dropped, continuations joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical = pending + line
        pending = ""
        keyword, _, rest = logical.partition(" ")
        result.append((keyword.upper(), " ".join(rest.split())))
    return result


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    return instructions[starts[-1] :]


def _env_example_names() -> set[str]:
    names = set()
    for line in (DEPLOY / "env.example").read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=", line)
        if match:
            names.add(match.group(1))
    return names


def _k8s_documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted([*K8S.glob("*.yaml"), *(K8S / "examples").glob("*.yaml")]):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _k8s_documents() if d["kind"] == kind}


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """(workload name, pod spec) for every Deployment, Job and CronJob."""
    for doc in _k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            yield doc["metadata"]["name"], doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _deployment(component: str) -> dict[str, Any]:
    (found,) = [
        d
        for d in _by_kind("Deployment").values()
        if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        == component
    ]
    return found


def _config_value(name: str, default: str) -> str:
    for config in _by_kind("ConfigMap").values():
        if name in (config.get("data") or {}):
            return str(config["data"][name])
    return default


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return loaded


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert match, duration
    value, unit = int(match.group(1)), match.group(2)
    return value / 1000 if unit == "ms" else value * (60 if unit == "m" else 1)


# --- the validators --------------------------------------------------------------------------


def test_check_deploy_script_passes() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "check_deploy.sh")],
        cwd=ROOT,
        env={**os.environ, "BIN": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deploy/ is valid" in result.stdout


# --- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_and_runs_as_a_numeric_non_root_user() -> None:
    instructions = _instructions(DEPLOY / "Dockerfile")
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert len(froms) >= 2 and all(f.startswith("python:3.11-slim") for f in froms), froms
    build = instructions[: [k for k, _ in instructions].index("FROM", 1)]
    assert any(k == "RUN" and "pip install" in a and re.search(r"\s\.(\s|$)", a) for k, a in build)
    final = _final_stage(instructions)
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the final stage sets no USER: the container would run as root"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit() and int(uid) != 0 and (not gid or int(gid) != 0), users[-1]
    for name, spec in _pod_specs():
        assert spec["securityContext"]["runAsUser"] == int(uid), name
    assert not any(k == "RUN" for k, _ in final[final.index(("USER", users[-1])) :])


def test_dockerfile_healthcheck_cmd_expose_and_migrations() -> None:
    final = _final_stage(_instructions(DEPLOY / "Dockerfile"))
    (healthcheck,) = [args for keyword, args in final if keyword == "HEALTHCHECK"]
    assert '"python", "/app/healthcheck.py"' in healthcheck and "CMD" in healthcheck
    assert ("COPY", "deploy/healthcheck.py /app/healthcheck.py") in final
    assert "urllib.request" in (DEPLOY / "healthcheck.py").read_text()
    assert ("CMD", '["orchestrator", "worker"]') in final
    exposed = {p for keyword, args in final if keyword == "EXPOSE" for p in args.split()}
    assert {"8080", "9100"} <= exposed
    env = " ".join(args for keyword, args in final if keyword == "ENV")
    match = re.search(r"ORCHESTRATOR_MIGRATIONS_DIR=(\S+)", env)
    assert match, "ORCHESTRATOR_MIGRATIONS_DIR is not set in the final stage"
    assert ("COPY", f"supabase/migrations {match.group(1)}") in final


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_context() -> None:
    entries = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in (".venv", ".git", ".pgdata", ".demo-pg", "bench/results", ".env"):
        assert needed in entries, needed
    assert {".pytest_cache", ".mypy_cache", ".ruff_cache", "**/__pycache__"} <= entries
    copied = {"pyproject.toml", "README.md", "orchestrator", "supabase", "deploy"}
    assert not copied & entries  # the image's COPY sources stay in the context


# --- docker compose --------------------------------------------------------------------------


def test_compose_stack_shape() -> None:
    compose = _compose()
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:15")
    assert "--emulate-supabase" in services["migrate"]["command"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    workers = [s for s in services.values() if s.get("command", [])[1:2] == ["worker"]]
    assert sum(s.get("deploy", {}).get("replicas", 1) for s in workers) >= 2
    assert services["web"]["command"] == ["orchestrator", "serve"]
    mosquitto = services["mosquitto"]
    assert "./mosquitto:/mosquitto/config:ro" in mosquitto["volumes"]
    assert "/mosquitto/config/mosquitto.conf" in mosquitto["command"]
    grace = float(_config_value("SHUTDOWN_GRACE_SECONDS", str(SHUTDOWN_GRACE_DEFAULT)))
    for name in OUR_IMAGE_SERVICES:
        service = services[name]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile", name
        assert service["env_file"][0]["path"] == "env.example", name
        assert _seconds(service["stop_grace_period"]) > grace, name
        if name != "migrate":
            assert service["depends_on"]["migrate"]["condition"] == (
                "service_completed_successfully"
            )
    ports = {"worker": _config_value("METRICS_PORT", "9100"), "web": "8080"}
    for name, port in ports.items():
        test = services[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "/app/healthcheck.py"], name
        assert test[3] == f"http://127.0.0.1:{port}/readyz", name
    assert services["postgres"]["healthcheck"]["test"][0] == "CMD-SHELL"


# --- Kubernetes ------------------------------------------------------------------------------


def test_probes_point_at_healthz_and_readyz_on_the_listening_port() -> None:
    expected = {
        "worker": int(_config_value("METRICS_PORT", "9100")),
        "web": int(_config_value("PORT", "8080")),
    }
    for component, port in expected.items():
        (container,) = _deployment(component)["spec"]["template"]["spec"]["containers"]
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, (component, probe)
            assert named.get(get["port"], get["port"]) == port, (component, probe)
        if "startupProbe" in container:
            assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_the_worker_pdb_selects_exactly_the_worker_pods() -> None:
    worker, web = _deployment("worker"), _deployment("web")
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]
    web_labels = web["spec"]["template"]["metadata"]["labels"]
    selecting = [
        pdb
        for pdb in _by_kind("PodDisruptionBudget").values()
        if pdb["spec"]["selector"]["matchLabels"].items() <= worker_labels.items()
    ]
    assert len(selecting) == 1, "exactly one PDB must cover the worker pods"
    (pdb,) = selecting
    assert pdb["spec"]["minAvailable"] == 1
    assert not pdb["spec"]["selector"]["matchLabels"].items() <= web_labels.items()
    # With one replica, minAvailable 1 would block every node drain.
    assert worker["spec"]["replicas"] >= 2
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_pods_outlive_the_shutdown_grace_and_are_locked_down() -> None:
    grace = float(_config_value("SHUTDOWN_GRACE_SECONDS", str(SHUTDOWN_GRACE_DEFAULT)))
    for component in ("worker", "web"):
        spec = _deployment(component)["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] > grace, component
    for name, spec in _pod_specs():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), (name, kind)
    images = {c["image"] for _, spec in _pod_specs() for c in spec["containers"]}
    assert len(images) == 1, images


def test_references_resolve_and_secrets_hold_placeholders_only() -> None:
    config_maps, secrets = _by_kind("ConfigMap"), _by_kind("Secret")
    for name, spec in _pod_specs():
        mounts = {
            m["name"]: m["mountPath"] for c in spec["containers"] for m in c.get("volumeMounts", [])
        }
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, name
                else:
                    assert source["secretRef"]["name"] in secrets, name
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]["stringData"], (name, ref)
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                secret = secrets[volume["secret"]["secretName"]]
                for variable in ("APNS_KEY_FILE", "FCM_SERVICE_ACCOUNT_FILE"):
                    path = Path(_config_value(variable, ""))
                    if str(path.parent) == mounts[volume["name"]]:
                        assert path.name in secret["stringData"], variable
    for name, secret in secrets.items():
        assert "data" not in secret, f"{name}: use stringData placeholders, never encoded data"
        for key, value in secret["stringData"].items():
            assert "REPLACE" in value.upper(), f"{name}.{key} is not an obvious placeholder"


def test_the_token_server_never_gets_the_service_role_key() -> None:
    secrets = _by_kind("Secret")
    (web,) = _deployment("web")["spec"]["template"]["spec"]["containers"]
    reachable = set()
    for source in web.get("envFrom", []):
        if "secretRef" in source:
            reachable |= set(secrets[source["secretRef"]["name"]]["stringData"])
    reachable |= {v["name"] for v in web.get("env", [])}
    assert "SUPABASE_SERVICE_ROLE_KEY" not in reachable
    assert "AGORA_APP_CERT" in reachable


def test_every_variable_the_manifests_set_is_in_env_example() -> None:
    documented = _env_example_names()
    secrets = _by_kind("Secret")
    used: dict[str, str] = {}
    for name, config in _by_kind("ConfigMap").items():
        used |= dict.fromkeys(config.get("data") or {}, f"ConfigMap {name}")
    for name, spec in _pod_specs():
        for container in spec["containers"]:
            used |= {v["name"]: f"{name} env" for v in container.get("env", [])}
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    secret = source["secretRef"]["name"]
                    used |= dict.fromkeys(secrets[secret]["stringData"], f"Secret {secret}")
    services = _compose()["services"]
    for service in OUR_IMAGE_SERVICES:
        used |= dict.fromkeys(services[service].get("environment", {}), f"compose {service}")
    missing = {var: where for var, where in used.items() if var not in documented}
    assert not missing, f"not in deploy/env.example: {missing}"


# --- the image's pieces, for real ------------------------------------------------------------


@pytest.mark.postgres
async def test_the_healthcheck_script_against_a_real_worker(fresh_dsn: str, tmp_path: Path) -> None:
    port, nothing = free_port(), free_port()
    worker = WorkerProcess(fresh_dsn, tmp_path / "w.log", "hc", METRICS_PORT=str(port))

    def check(*urls: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "METRICS_PORT": str(port), "PORT": str(nothing), "HOST": "0.0.0.0"}
        return subprocess.run(
            [sys.executable, str(DEPLOY / "healthcheck.py"), *urls],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    try:

        async def subscribed() -> bool:
            return worker.subscribed()

        await wait_for(subscribed, timeout=20)
        assert check().returncode == 0  # the image's HEALTHCHECK as written: no arguments
        assert check(f"http://127.0.0.1:{port}/readyz").returncode == 0  # compose's test
    finally:
        assert worker.terminate() == 0
    down = check()
    assert down.returncode == 1 and "unhealthy" in down.stderr
    assert check(f"http://127.0.0.1:{nothing}/healthz").returncode == 1


@pytest.mark.postgres
@pytest.mark.slow
async def test_the_image_install_migrates_outside_the_source_tree(
    pg_server_dsn: str, tmp_path: Path
) -> None:
    """The Dockerfile's steps without Docker: copy what it copies, `pip install .` (no deps:
    they are in this venv), then run `orchestrator migrate --emulate-supabase` from that install,
    from another directory, with ORCHESTRATOR_MIGRATIONS_DIR as the image sets it."""
    src, site, app = tmp_path / "src", tmp_path / "site", tmp_path / "app"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "orchestrator", src / "orchestrator")
    shutil.copytree(ROOT / "supabase" / "migrations", app / "supabase" / "migrations")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), "."],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert (site / "orchestrator" / "adapters" / "postgres" / "emulation.sql").is_file()
    name = f"orch_img_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server_dsn)
    await admin.execute(f"create database {name}")
    try:
        base, _, query = pg_server_dsn.partition("?")
        dsn = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "PYTHONPATH": str(site),
            "PYTHONSAFEPATH": "1",  # not the cwd: only the installed copy is importable first
            "ORCHESTRATOR_MIGRATIONS_DIR": str(app / "supabase" / "migrations"),
            "LOG_FORMAT": "json",
        }
        code = (
            "import orchestrator, sys; from orchestrator.cli import main;"
            f" assert orchestrator.__file__.startswith({str(site)!r}), orchestrator.__file__;"
            " sys.exit(main(sys.argv[1:]))"
        )
        run = subprocess.run(
            [sys.executable, "-c", code, "migrate", "--emulate-supabase"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        versions = sorted(p.name.split("_", 1)[0] for p in (app / "supabase/migrations").iterdir())
        assert f"applied {len(versions)} migration(s)" in run.stdout
        conn = await asyncpg.connect(dsn)
        try:
            applied = await conn.fetch(
                "select version from supabase_migrations.schema_migrations order by version"
            )
            assert [r["version"] for r in applied] == versions
        finally:
            await conn.close()
    finally:
        await admin.execute(f"drop database if exists {name} with (force)")
        await admin.close()


# --- the runbook -----------------------------------------------------------------------------

LOGGERS = ("log", "logger")
LEVELS = ("debug", "info", "warning", "error", "exception", "critical")
# Events logged under a computed name (engine/deliveries.py maps outcomes to these).
COMPUTED_EVENTS = {"push_sent", "push_retry", "push_failed", "device_pruned"}


def _is_log_method(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr in LEVELS
        and isinstance(node.value, ast.Name)
        and node.value.id in LOGGERS
    )


def _log_events() -> set[str]:
    """Every event name the code logs: the first argument of log.<level>(…) calls, also in the
    `(log.error if x else log.warning)("a" if x else "b", …)` form."""
    found: set[str] = set()
    for path in (ROOT / "orchestrator").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            methods = [func.body, func.orelse] if isinstance(func, ast.IfExp) else [func]
            if not all(_is_log_method(m) for m in methods):
                continue
            first = node.args[0]
            names = [first.body, first.orelse] if isinstance(first, ast.IfExp) else [first]
            found |= {n.value for n in names if isinstance(n, ast.Constant)}
    return found | COMPUTED_EVENTS


def test_the_runbook_explains_every_log_event() -> None:
    runbook = (ROOT / "docs" / "operations.md").read_text()
    events = _log_events()
    assert {"worker_started", "prune_brake_engaged", "request", "push_dry_run"} <= events
    missing = sorted(e for e in events if f"`{e}`" not in runbook)
    assert not missing, f"docs/operations.md does not explain: {missing}"
