"""Errors that only mean "try again": lock conflicts while a migration runs, and the like."""

from __future__ import annotations

# deadlock_detected, lock_not_available, serialization_failure: the statement was rolled back
# and nothing was lost. Classified by SQLSTATE so the engine needs no driver import.
CONFLICT_SQLSTATES = frozenset({"40P01", "55P03", "40001"})


def is_conflict(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) in CONFLICT_SQLSTATES
