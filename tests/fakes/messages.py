"""PushMessage builders for provider tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from itertools import count

from orchestrator.domain.model import EndReason, Platform, PushKind
from orchestrator.domain.push import PushMessage
from tests.fakes.tokens import apns_hex, hex_token

_ids = count(1)
# APNs-format tokens the fakes answer "ok" (tests/fakes/tokens.py).
OK_ALERT, OK_VOIP = hex_token("ok"), hex_token("ok")


def push(
    kind: PushKind = PushKind.RING,
    platform: Platform = Platform.IOS,
    *,
    token: str | None = OK_ALERT,
    voip_token: str | None = OK_VOIP,
    expires_in: float = 30.0,
    video: bool = True,
    caller_name: str = "Ada Lovelace",
    apns_environment: str | None = None,
    end_reason: EndReason | None = None,
    seq: int = 1,
) -> PushMessage:
    return PushMessage(
        delivery_id=next(_ids),
        call_id=uuid.uuid4(),
        kind=kind,
        seq=seq,
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        caller_id=uuid.uuid4(),
        caller_name=caller_name,
        video=video,
        platform=platform,
        # iOS tokens in APNs format (64+ hex); a readable name is encoded (tests/fakes/tokens.py).
        token=apns_hex(token) if token and platform is Platform.IOS else token,
        voip_token=apns_hex(voip_token) if voip_token and platform is Platform.IOS else voip_token,
        apns_environment=apns_environment,
        end_reason=end_reason,
    )


def ring_ios(voip_token: str, **kw: object) -> PushMessage:
    return push(PushKind.RING, Platform.IOS, voip_token=voip_token, **kw)  # type: ignore[arg-type]


def android(kind: PushKind, token: str, **kw: object) -> PushMessage:
    return push(kind, Platform.ANDROID, token=token, voip_token=None, **kw)  # type: ignore[arg-type]
