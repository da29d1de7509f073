"""Pure helpers of the Realtime event source: a postgres_changes payload becomes a Wakeup.

Nothing here does I/O or raises: the payload arrives from the network, and a parser bug must
degrade to `Wakeup(None)` (a re-scan, so nothing is lost) rather than lose the hint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from uuid import UUID

from orchestrator.ports import Wakeup

SCHEMA, TABLE = "public", "calls"
EVENT_TYPES = ("INSERT", "UPDATE")
SUBSCRIBED = "Subscribed to PostgreSQL"


@dataclass(frozen=True, slots=True)
class Change:
    """What one postgres_changes payload means for the worker."""

    wakeup: Wakeup
    event_type: str | None = None
    lag: float | None = None  # seconds from commit to now; None without a usable timestamp
    problem: str | None = None  # a short reason when malformed; never any payload content


def parse_change(payload: object, now: datetime) -> Change:
    try:
        return _parse(payload, now)
    except Exception:  # defensive only: _parse checks every type it touches
        return Change(Wakeup(None), problem="unparseable payload")


def _parse(payload: object, now: datetime) -> Change:
    data = payload.get("data") if isinstance(payload, Mapping) else None
    if not isinstance(data, Mapping):
        return Change(Wakeup(None), problem="no data object")
    event_type = _text(data.get("type"))
    lag = commit_lag(data.get("commit_timestamp"), now)

    def bad(problem: str) -> Change:
        return Change(Wakeup(None), event_type, lag, problem)

    if (data.get("schema"), data.get("table")) != (SCHEMA, TABLE):
        return bad("change of another table")
    if event_type not in EVENT_TYPES:
        return bad("unexpected change type")
    record = data.get("record")
    if not isinstance(record, Mapping):
        return bad("no record")
    raw_id = record.get("id")
    if not isinstance(raw_id, str):
        return bad("record has no string id")
    try:
        call_id = UUID(raw_id)
    except ValueError:
        return bad("record id is not a uuid")
    # An end the worker has nothing to do for is not swept (domain.model.ENDS_WITHOUT_WORK).
    ended = record.get("end_reason") if record.get("status") == "ended" else None
    return Change(Wakeup(call_id, end_reason=_text(ended)), event_type, lag)


def _text(value: object) -> str | None:
    # After the client's validation `type` is a str-Enum member; str() of it is the class path.
    if isinstance(value, Enum):
        value = value.value
    return value if isinstance(value, str) else None


def commit_lag(timestamp: object, now: datetime) -> float | None:
    """now - commit_timestamp in seconds (clamped at 0: the two clocks are not the same)."""
    if not isinstance(timestamp, str):
        return None
    try:
        committed = datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    if committed.tzinfo is None:
        committed = committed.replace(tzinfo=UTC)
    return max(0.0, (now - committed).total_seconds())


def is_subscribed(payload: object) -> bool:
    """True for the server's "Subscribed to PostgreSQL": only then is the stream live."""
    return (
        getattr(payload, "status", None) == "ok"
        and getattr(payload, "extension", None) == "postgres_changes"
        and SUBSCRIBED in str(getattr(payload, "message", ""))
    )


def backoff_delay(attempt: int, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Exponential backoff with "equal jitter": between half and all of min(cap, base * 2^n).

    Keeping at least half the delay avoids a tight loop against a server that fails at once;
    the random half spreads the reconnects of many workers after a shared outage.
    """
    ceiling = min(cap, base * 2.0 ** min(attempt, 32))
    return ceiling * (0.5 + 0.5 * rand())
