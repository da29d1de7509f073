"""sqlfluff over the SQL the product runs from Python strings (run by `make lint`).

Migrations and *.sql files are linted directly; statements in Python are not files, so this
imports every module under orchestrator/adapters/postgres/ (where all product SQL lives), takes
each module-level constant that is a SQL statement (upper-case name, str value starting with a
SQL keyword; f-string templates are linted as the module renders them), writes each to
<module>.<NAME>.sql in a temporary folder and runs sqlfluff on that folder with the repository's
.sqlfluff. SQL built per call inside functions is not seen; keep statements as constants.

The rules are .sqlfluff's plus STYLE_ONLY excluded: layout written for Python source (one-line
statements, compact CTEs), not correctness. Three findings are accepted by constant name, each
with its reason (ACCEPTED); every other finding fails the lint.
"""

from __future__ import annotations

import configparser
import importlib
import pkgutil
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "orchestrator.adapters.postgres"
STATEMENT = re.compile(
    r"^\s*(select|insert|update|delete|with|create|alter|drop|grant|revoke|lock|do|set|"
    r"listen|notify|analyze|vacuum|truncate|copy)\b",
    re.IGNORECASE,
)

# Layout of SQL kept inside Python strings: short statements on one line (LT14), CTEs without
# a blank line after them (LT08), operator and comma position (LT03, LT04), `join` without
# `inner` (AM05), `on a.x = b.y` order (ST09), select-list order (ST06).
STYLE_ONLY = ("AM05", "LT03", "LT04", "LT08", "LT14", "ST06", "ST09")
ACCEPTED = {
    # `orchestrator call show` prints the whole row, including columns later migrations add.
    "CALL": "AM04",
    # insert ... select c.id, d.id, ...: the names are the insert's target columns, not aliases.
    "CREATE_RINGS": "AL08",
    # `$2 <> 'missed'` compares a parameter, which sqlfluff reads as a constant expression.
    "END_RINGING": "ST10",
    # An operator looks a user up by email; auth.users keeps emails unique (case-insensitive
    # duplicates would be a Supabase Auth bug), so any matching row is the one.
    "USER_BY_EMAIL": "AM09",
}


def excluded_rules() -> str:
    config = configparser.ConfigParser()
    config.read(ROOT / ".sqlfluff")
    base = [r.strip() for r in config["sqlfluff"]["exclude_rules"].split(",") if r.strip()]
    return ",".join(sorted({*base, *STYLE_ONLY}))


def statements() -> dict[str, str]:
    """`module.NAME` -> SQL text, for every SQL constant in the postgres adapter package."""
    sys.path.insert(0, str(ROOT))
    package = importlib.import_module(PACKAGE)
    found: dict[str, str] = {}
    for info in pkgutil.walk_packages(package.__path__, f"{PACKAGE}."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if name.isupper() and isinstance(value, str) and STATEMENT.match(value):
                found[f"{info.name.removeprefix(PACKAGE + '.')}.{name}"] = value
    return found


def main() -> int:
    found = statements()
    if not found:
        print(f"sql strings: no SQL constants found under {PACKAGE}")
        return 1
    folder = Path(tempfile.mkdtemp(prefix="sql-strings-"))
    try:
        for key, sql in found.items():
            rule = ACCEPTED.get(key.rsplit(".", 1)[1])
            header = f"-- noqa: disable={rule}\n" if rule else ""
            (folder / f"{key}.sql").write_text(header + sql.strip() + ";\n")
        shutil.copy(ROOT / ".sqlfluff", folder / ".sqlfluff")
        command = [str(Path(sys.executable).with_name("sqlfluff")), "lint", "--processes", "1"]
        command += ["--exclude-rules", excluded_rules()]
        result = subprocess.run([*command, str(folder)], check=False, cwd=folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"sql strings: {len(found)} statement(s) from {PACKAGE}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
