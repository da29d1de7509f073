"""Every SQL statement the product runs lives under orchestrator/adapters/postgres/: a string
literal elsewhere in the package that reads like SQL fails this test."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "orchestrator"
HOME = PACKAGE / "adapters" / "postgres"
# The start of a statement, not an English sentence: "select x from", "insert into", ...
SQL = re.compile(
    r"^\s*(select\s+\S.*?(\bfrom\b|\(|\$\d)|insert\s+into\s|update\s+[\w.]+\s+(\w+\s+)?set\s"
    r"|delete\s+from\s|with\s+\w+\s+as\s*\(|set\s+local\s|(create|alter|drop)\s+(table|function)\s)",
    re.IGNORECASE | re.DOTALL,
)


def docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def sql_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    skip = docstrings(tree)
    found: dict[int, str] = {}  # by line: an f-string's parts are literals too
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
        ):
            text = node.value
        else:
            continue
        if SQL.match(text):
            found.setdefault(node.lineno, f"{path}:{node.lineno}: {text[:60]!r}")
    return list(found.values())


def test_sql_lives_only_under_adapters_postgres() -> None:
    files = [p for p in sorted(PACKAGE.rglob("*.py")) if HOME not in p.parents]
    assert len(files) > 50
    assert [hit for path in files for hit in sql_literals(path)] == []


def test_the_scan_sees_sql_and_ignores_prose(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""select the best: docstrings are prose."""\n'
        'A = "select id from public.calls where id = $1"\n'
        'B = "update public.calls set status = $2"\n'
        "C = f\"insert into auth.users ({', '.join([])}) values ()\"\n"
        'D = "delete ended calls older than DAYS"\n'
        'E = "Set by the trace hook"\n'
        'F = "INSERT"\n'
    )
    assert len(sql_literals(sample)) == 3
    # And the real home does hold SQL (the scan would see it there).
    assert sql_literals(HOME / "operator_sql.py")
