"""Error logs carry type, message and a traceback, with anything token-like redacted."""

from __future__ import annotations

from orchestrator.logs import REDACTED, exception_fields

DEVICE = "a1b2c3d4" * 8  # a 64-hex APNs device token
JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def _payload_bug(token: str) -> None:
    secret_local = token  # frame locals must never reach the log
    raise ValueError(f"cannot encode payload for {secret_local} with {JWT}")


def test_type_message_and_traceback_without_secrets() -> None:
    try:
        _payload_bug(DEVICE)
    except ValueError as exc:
        fields = exception_fields(exc)
    assert fields["error"] == "ValueError"
    assert fields["detail"].startswith("cannot encode payload for ")
    assert REDACTED in fields["detail"]
    assert (
        "_payload_bug" in fields["traceback"] and "test_exception_fields.py" in fields["traceback"]
    )
    for secret in (DEVICE, JWT):
        assert secret not in fields["detail"] and secret not in fields["traceback"]
    assert 'raise ValueError(f"cannot encode payload' in fields["traceback"]  # source, not values
