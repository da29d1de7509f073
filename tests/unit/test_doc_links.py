"""Every relative link and #anchor in the documentation resolves.

The README is a map of docs/ pages, and the pages link to each other's sections; a renamed
heading or a moved page must fail here rather than leave a dead link for a reader. Anchors are
computed the way GitHub renders headings (lowercase, punctuation dropped, spaces to hyphens,
repeats numbered), so a link that works here works on GitHub. External URLs are not fetched.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Inline links and images: [text](target) / ![alt](target "title"); the target ends at
# whitespace or ")". Reference definitions: "[label]: target".
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"", re.IGNORECASE)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def doc_files() -> list[Path]:
    """The pages the brief of issue 13 names: README, docs/, bench, the client kit, deploy."""
    files = [ROOT / "README.md", ROOT / "bench" / "README.md"]
    files += sorted((ROOT / "docs").glob("*.md"))
    files += [ROOT / "clients" / "typescript" / "README.md"]
    files += sorted((ROOT / "deploy").glob("**/README.md"))
    return [f for f in files if f.is_file()]


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines outside fenced code blocks, with inline code spans blanked (links there are code)."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if fence is None and stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
            continue
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            continue
        yield number, CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = re.sub(r"[^\w\- ]", "", text)  # keeps letters, digits, "_", "-", spaces
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every #fragment a link may use on this page."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    text = path.read_text(encoding="utf-8")
    fence: str | None = None
    for line in text.splitlines():
        stripped = line.lstrip()
        if fence is None and stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
            continue
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            continue
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> Iterator[tuple[int, str]]:
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for match in INLINE.finditer(line):
            yield number, match.group(1)
        ref = REFERENCE.match(line)
        if ref:
            yield number, ref.group(1)


def broken_links(path: Path) -> list[str]:
    """'file:line: target (why)' for every relative link in `path` that does not resolve."""
    problems: list[str] = []
    for number, target in links(path):
        if EXTERNAL.match(target):
            continue
        where, _, fragment = target.partition("#")
        dest = (path.parent / where).resolve() if where else path
        name = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{number}"
        if not dest.exists():
            problems.append(f"{name}: {target} (no such file)")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            problems.append(f"{name}: {target} (no heading #{fragment} in {dest.name})")
    return problems


def test_the_pages_the_brief_names_are_checked() -> None:
    names = {str(f.relative_to(ROOT)) for f in doc_files()}
    assert {"README.md", "bench/README.md", "clients/typescript/README.md"} <= names
    assert "docs/configuration.md" in names
    assert any(n.startswith("deploy/") for n in names)


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_slugs_follow_github() -> None:
    assert slug("Realtime event source (`EVENT_SOURCE=supabase`)") == (
        "realtime-event-source-event_sourcesupabase"
    )
    assert slug("Client kit (TypeScript / React Native)") == "client-kit-typescript--react-native"
    assert slug("Delivery guarantee, across replicas and crashes") == (
        "delivery-guarantee-across-replicas-and-crashes"
    )
    assert slug("3. Health, metrics and alerts") == "3-health-metrics-and-alerts"
    assert slug("`supabase`: only its Realtime client") == "supabase-only-its-realtime-client"


def test_the_checker_finds_a_dead_file_a_dead_anchor_and_ignores_code(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## A section\n\n## A section\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[ok](other.md#a-section) [ok too](other.md#a-section-1) [self](#page)\n"
        "[gone](missing.md) [bad anchor](other.md#nope) [web](https://example.com/x)\n"
        "`[code](missing-in-code.md)`\n\n"
        "```md\n[fenced](missing-in-fence.md)\n```\n\n"
        "[ref]: also-missing.md\n"
    )
    problems = broken_links(page)
    assert len(problems) == 3, problems
    assert any("missing.md (no such file)" in p for p in problems)
    assert any("other.md#nope (no heading #nope" in p for p in problems)
    assert any("also-missing.md" in p for p in problems)
