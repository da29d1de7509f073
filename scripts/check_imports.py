"""Import boundaries: the domain is pure, ports depend only on the domain, adapters never
reach into the wiring, nothing in production imports orchestrator.testing (the test doubles).
Run by `make lint`; exits 1 listing every violation."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "orchestrator"
# The domain may use only these standard-library modules: no I/O, no asyncio.
DOMAIN_STDLIB = {
    "__future__",
    "dataclasses",
    "datetime",
    "enum",
    "typing",
    "uuid",
    "collections",
    "collections.abc",
    "functools",
    "itertools",
    "math",
    "re",
    "unicodedata",  # pure: character categories for caller names
}
WIRING = {
    "orchestrator.worker",
    "orchestrator.tokenserver.app",
    "orchestrator.cli",
    "orchestrator.demo",
}


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def violations() -> list[str]:
    bad: list[str] = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        module = ".".join(rel.parts)
        for name in imports(path):
            top = name.split(".")[0]
            if module.startswith("orchestrator.domain"):
                if not (name.startswith("orchestrator.domain") or name in DOMAIN_STDLIB):
                    bad.append(f"{module}: the domain may not import {name}")
            elif module == "orchestrator.ports":
                if top == "orchestrator" and not name.startswith("orchestrator.domain"):
                    bad.append(f"{module}: ports may import only the domain, not {name}")
            elif module.startswith("orchestrator.adapters"):
                if any(name == w or name.startswith(w + ".") for w in WIRING):
                    bad.append(f"{module}: adapters may not import the wiring ({name})")
                if name.startswith("orchestrator.engine"):
                    bad.append(f"{module}: adapters may not import the engine ({name})")
            elif module.startswith("orchestrator.engine") and (
                name.startswith("orchestrator.adapters") or name.startswith("orchestrator.testing")
            ):
                bad.append(f"{module}: the engine uses adapters only through ports ({name})")
            if not module.startswith("orchestrator.testing") and name.startswith(
                "orchestrator.testing"
            ):
                bad.append(f"{module}: production code may not import the test doubles ({name})")
    return bad


if __name__ == "__main__":
    problems = violations()
    for line in problems:
        print(line)
    print(f"import boundaries: {len(problems)} violation(s)")
    sys.exit(1 if problems else 0)
