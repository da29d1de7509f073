"""The caller's display name as pushes carry it (abuse limits).

`raw_user_meta_data` is whatever the user typed: bidi overrides (U+202E turns "moc.knab" into
"bank.com"), zero-width characters, newlines and control characters would reach the phone's
"missed call from …" notification as they are. Removed: Unicode categories Cc (controls,
including CR/LF and tab), Cf (format: bidi controls, zero-width space/joiners, BOM), Zl and Zp
(line and paragraph separators). Then runs of whitespace become one space, the ends are trimmed,
and at most 64 characters stay; nothing left → None (pushes carry null / no name).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

CALLER_NAME_MAX = 64
_REMOVED = frozenset({"Cc", "Cf", "Zl", "Zp"})


@lru_cache(maxsize=4096)
def clean_caller_name(raw: str | None) -> str | None:
    """Pure; cached because a call's deliveries all carry the same name."""
    if not raw:
        return None
    kept = "".join(ch for ch in raw if unicodedata.category(ch) not in _REMOVED)
    # str.split() without arguments splits on every Unicode whitespace run (Zs included).
    collapsed = " ".join(kept.split())
    name = collapsed[:CALLER_NAME_MAX].rstrip()
    return name or None
