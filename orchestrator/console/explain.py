"""End reasons explained in words, for support ("why didn't it ring?"). Pure: no I/O.

Keyed by the reason's string so that reasons newer than this module's EndReason import
(`connection_lost`) are explained too; an unknown reason still gets a sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class EndFacts:
    """What the timeline knows about how a call ended."""

    end_reason: str
    actor: str | None = None  # who wrote the call_ended row: caller|callee|system|operator
    ring_timeout: float | None = None  # seconds from created_at to ring_deadline
    rang_for: float | None = None  # seconds from created_at to the end (or the answer)
    talked_for: float | None = None  # seconds from accepted_at to ended_at
    devices: int = 0  # ring deliveries (one per ring-capable device)
    sent: int = 0
    acked: int = 0
    failed: int = 0
    detail: Mapping[str, Any] = field(default_factory=dict)


def _s(seconds: float | None) -> str:
    if seconds is None:
        return "an unknown time"
    if seconds >= 120:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s"
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def ring_summary(f: EndFacts) -> str:
    if f.devices == 0:
        return "no ring was queued (no ring-capable device)"
    noun = "device" if f.devices == 1 else "devices"
    parts = [f"{f.acked} of {f.devices} {noun} acknowledged the ring"]
    if f.sent < f.devices:
        parts.append(f"{f.sent} of {f.devices} rings were sent")
    if f.failed:
        parts.append(f"{f.failed} failed")
    return ", ".join(parts)


def _who(actor: str | None) -> str:
    return {"caller": "the caller", "callee": "the callee", "operator": "an operator"}.get(
        actor or "", "the system"
    )


def _completed(f: EndFacts) -> str:
    if f.detail.get("by") == "presence":
        return (
            f"the call was answered and ended after {_s(f.talked_for)}: a participant quit "
            "the channel without updating the call, so the presence check ended it"
        )
    return f"the call was answered and {_who(f.actor)} hung up after {_s(f.talked_for)}"


def _missed(f: EndFacts) -> str:
    if f.detail.get("rang") is False:
        return (
            "the worker first saw the call after its ring deadline, so nothing rang "
            "(was the worker down or far behind?)"
        )
    return f"nobody answered within {_s(f.ring_timeout)}; {ring_summary(f)}"


def _unreachable(f: EndFacts) -> str:
    why = f.detail.get("reason")
    if why == "blocked":
        return (
            "the callee has blocked the caller (the caller only ever sees 'unreachable'); "
            "nothing rang"
        )
    if f.devices == 0 or why == "no_devices":
        return "the callee has no ring-capable device (iOS needs a VoIP token), so nothing rang"
    return f"every ring delivery failed permanently before the deadline; {ring_summary(f)}"


def _busy(f: EndFacts) -> str:
    return (
        "the callee was already in an accepted call, a device reported busy, or they "
        f"answered another call; {ring_summary(f)}"
    )


def _failed(f: EndFacts) -> str:
    if f.actor == "operator":
        return "an operator ended the call as failed"
    error = f.detail.get("error") or f.detail.get("reason")
    return "a server-side error or a validation failure ended it" + (f" ({error})" if error else "")


def _glare(f: EndFacts) -> str:
    into = f.detail.get("merged_into")
    target = f" into call {into}" if into else ""
    return (
        "both users called each other at the same moment; this call was merged"
        f"{target}, which survived as the accepted call"
    )


def _connection_lost(f: EndFacts) -> str:
    return (
        "the call was answered, then a participant was no longer in it (no Agora presence "
        f"or heartbeat for the presence timeout) after {_s(f.talked_for)}; the system ended it"
    )


EXPLAINERS: dict[str, Callable[[EndFacts], str]] = {
    "completed": _completed,
    "declined": lambda f: (
        f"the callee declined after {_s(f.rang_for)} of ringing; " + ring_summary(f)
    ),
    "cancelled": lambda f: (
        f"the caller hung up after {_s(f.rang_for)}, before anyone answered; " + ring_summary(f)
    ),
    "missed": _missed,
    "busy": _busy,
    "unreachable": _unreachable,
    "failed": _failed,
    "max_duration": lambda f: (
        f"the call reached the maximum call length after {_s(f.talked_for)} (MAX_CALL_SECONDS)"
    ),
    "glare": _glare,
    "connection_lost": _connection_lost,
}


def explain(f: EndFacts) -> str:
    """One sentence: '<reason>: <why>', plus who ended it when an operator did."""
    explainer = EXPLAINERS.get(f.end_reason)
    why = explainer(f) if explainer else f"ended with reason '{f.end_reason}'"
    tail = ""
    if f.actor == "operator" and f.end_reason != "failed":
        tail = " (ended by an operator)"
    return f"{f.end_reason}: {why}{tail}."


def is_explained(end_reason: str) -> bool:
    return end_reason in EXPLAINERS
