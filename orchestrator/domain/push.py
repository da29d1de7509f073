"""Push messages as pure data: what every provider must carry, independent of the wire format."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from orchestrator.domain.model import EndReason, Platform, PushKind
from orchestrator.domain.names import CALLER_NAME_MAX

# How long a push stays deliverable at the provider, by kind (ring: until the ring deadline).
STOP_TTL_SECONDS = 60
MISSED_TTL_SECONDS = 24 * 3600


def rfc3339(ts: datetime) -> str:
    """RFC 3339 UTC with milliseconds and `Z`, the format of every payload and API."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class PushMessage:
    delivery_id: int
    call_id: UUID
    kind: PushKind
    seq: int
    expires_at: datetime
    caller_id: UUID | None
    caller_name: str | None  # already clean (orchestrator.domain.names); None: no name
    video: bool
    platform: Platform
    # Exactly one of these is used: iOS rings go to the PushKit token, everything else to `token`.
    token: str | None
    voip_token: str | None
    apns_environment: str | None
    end_reason: EndReason | None = None
    recipient_id: UUID | None = None  # the callee; the pruning brake counts per recipient

    @property
    def target_token(self) -> str | None:
        if self.platform is Platform.IOS and self.kind is PushKind.RING:
            return self.voip_token
        return self.token

    def common_fields(self) -> dict[str, str | int | bool | None]:
        """The fields the contract requires in every push, typed (FCM stringifies them)."""
        fields: dict[str, str | int | bool | None] = {
            "call_id": str(self.call_id),
            "kind": self.kind.value,
            "seq": self.seq,
            "expires_at": rfc3339(self.expires_at),
            "caller_id": str(self.caller_id) if self.caller_id else "",
            "caller_name": self.caller_name[:CALLER_NAME_MAX] if self.caller_name else None,
            "video": self.video,
        }
        if self.end_reason is not None:
            fields["end_reason"] = self.end_reason.value
        return fields

    def __repr__(self) -> str:  # never print device tokens
        return (
            f"PushMessage(delivery_id={self.delivery_id}, call_id={self.call_id}, "
            f"kind={self.kind.value}, platform={self.platform.value}, seq={self.seq})"
        )


@dataclass(frozen=True, slots=True)
class Accepted:
    """The provider took the push."""

    provider_message_id: str | None = None


@dataclass(frozen=True, slots=True)
class Retry:
    """A transient failure (429, 5xx, timeout, connection loss): try again later."""

    error: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Permanent:
    """Will never succeed. `prune` means the token itself is dead (disable the device)."""

    error: str
    prune: bool = False


@dataclass(frozen=True, slots=True)
class Uncertain:
    """The request may have reached the provider: a timeout after it was written, the
    connection lost after it, a GOAWAY or reset that covers its stream. Resending it may
    deliver it twice; the engine decides (a ring at most once more, stop/missed never)."""

    error: str


UNCERTAIN = "uncertain"  # push_deliveries.last_error of a push that may or may not have arrived

PushResult = Accepted | Retry | Permanent | Uncertain
