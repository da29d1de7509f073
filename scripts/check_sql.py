"""SQL lint for supabase/migrations (run by `make lint`).

Rules the contract makes: Supabase CLI file names; no transaction control inside a file (the
runner wraps each file in one); every function pins `search_path = ''`; every table created in
`public` enables row level security; SECURITY DEFINER functions in `public` are only the three
client RPCs; no `grant ... to anon`; no bare `drop` of a column or table (expand/contract).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

NAME = re.compile(r"^\d{14}_[a-z0-9_]+\.sql$")
FUNCTION = re.compile(
    r"create\s+(?:or\s+replace\s+)?function\s+([\w.]+)\s*\((.*?)\)\s*returns(.*?)\bas\s+\$",
    re.IGNORECASE | re.DOTALL,
)
TABLE = re.compile(r"create\s+table\s+(?:if\s+not\s+exists\s+)?public\.(\w+)", re.IGNORECASE)
RPCS = {
    "public.register_push_device",
    "public.call_ring_summary",
    "public.ack_ring",
    "public.call_heartbeat",  # presence (second release)
}


def strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def check_file(path: Path, sql: str) -> list[str]:
    problems = []
    if not NAME.match(path.name):
        problems.append(f"{path.name}: name must be <yyyymmddhhmmss>_<snake_case>.sql")
    body = strip_comments(sql)
    if re.search(r"^\s*(begin|commit|rollback)\s*;", body, re.IGNORECASE | re.MULTILINE):
        problems.append(f"{path.name}: no BEGIN/COMMIT; the runner applies each file atomically")
    declared = len(re.findall(r"create\s+(?:or\s+replace\s+)?function", body, re.IGNORECASE))
    if declared != len(FUNCTION.findall(body)):
        problems.append(f"{path.name}: a function header this lint cannot read; keep the form")
    for match in FUNCTION.finditer(body):
        name, header = match.group(1), match.group(3)
        if not re.search(r"set\s+search_path\s*=\s*''", header, re.IGNORECASE):
            problems.append(f"{path.name}: function {name} must set search_path = ''")
        definer = re.search(r"security\s+definer", header, re.IGNORECASE)
        if definer and name.startswith("public.") and name not in RPCS:
            problems.append(f"{path.name}: {name} is SECURITY DEFINER in public")
    for table in TABLE.findall(body):
        rls = rf"alter\s+table\s+public\.{table}\s+enable\s+row\s+level\s+security"
        if not re.search(rls, ALL_SQL, re.IGNORECASE):
            problems.append(f"{path.name}: public.{table} never enables row level security")
    if re.search(r"\bgrant\b[^;]*\bto\s+(?:[\w, ]*\b)?anon\b", body, re.IGNORECASE):
        problems.append(f"{path.name}: nothing is granted to anon")
    if re.search(r"\bdrop\s+(table|column)\b", body, re.IGNORECASE):
        problems.append(f"{path.name}: drops break the running workers (expand/contract)")
    return problems


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "supabase/migrations")
    files = sorted(folder.glob("*.sql"))
    ALL_SQL = "\n".join(strip_comments(f.read_text()) for f in files)
    found = [p for f in files for p in check_file(f, f.read_text())]
    for line in found:
        print(line)
    print(f"sql lint: {len(files)} migration(s), {len(found)} problem(s)")
    sys.exit(1 if found or not files else 0)
