"""The TypeScript client kit (clients/typescript): strict type check, ESM build, Node unit
tests over fixtures from our own Python payload builders and catalogue, and freshness of the
generated database.types.ts against the migrated test database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.kit_fixtures import write_fixtures
from tests.support.node_kit import KIT, ROOT, compile_kit, npm_ci, require_node, run

# One xdist worker runs every test of the kit: they share its node_modules and build/.
pytestmark = pytest.mark.xdist_group("node_kit")


@pytest.fixture(scope="module")
def kit() -> Path:
    require_node()
    npm_ci(KIT)
    return KIT


@pytest.fixture(scope="module")
def compiled(kit: Path) -> Path:
    """src + test compiled (strict) into build/: also the type check of both."""
    return compile_kit()


def test_package_builds_as_esm_with_declarations(kit: Path) -> None:
    run(["npx", "--no-install", "tsc", "-p", "tsconfig.build.json"], kit)
    dist = kit / "dist"
    for name in ("index.js", "index.d.ts", "database.types.d.ts", "renewal.d.ts"):
        assert (dist / name).exists(), name
    script = (
        "const kit = await import('./dist/index.js');"
        "if (typeof kit.startCall !== 'function' || typeof kit.parseFcmData !== 'function')"
        " throw new Error('exports missing');"
    )
    run(["node", "--input-type=module", "-e", script], kit)
    # What `npm pack` (the app's install) ships: the build and the sources, no tests.
    packed = json.loads(run(["npm", "pack", "--dry-run", "--json", "--ignore-scripts"], kit))
    files = {entry["path"] for entry in packed[0]["files"]}
    assert {"dist/index.js", "dist/index.d.ts", "src/index.ts", "package.json"} <= files
    assert not any(f.startswith(("test/", "node_modules/", "docs-check/", "build/")) for f in files)


def test_no_runtime_dependency_but_supabase_js_as_peer(kit: Path) -> None:
    manifest = json.loads((kit / "package.json").read_text())
    assert "dependencies" not in manifest or manifest["dependencies"] == {}
    assert list(manifest["peerDependencies"]) == ["@supabase/supabase-js"]
    assert manifest["peerDependencies"]["@supabase/supabase-js"].startswith("^2.")
    assert manifest["type"] == "module"


def test_unit_tests_over_server_fixtures(compiled: Path, tmp_path: Path) -> None:
    fixtures = write_fixtures(tmp_path / "fixtures.json")
    output = run(
        ["node", "--test", "--test-reporter=spec", str(compiled / "test" / "unit")],
        KIT,
        KIT_FIXTURES=str(fixtures),
    )
    assert "# fail 0" in output or "ℹ fail 0" in output, output


@pytest.mark.postgres
def test_database_types_are_fresh(kit: Path, migrated_dsn: str) -> None:
    done = subprocess.run(
        [sys.executable, "scripts/gen_client_types.py", "--check", "--dsn", migrated_dsn],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr + "\nrun `make types` and commit the result"
