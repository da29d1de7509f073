"""Logs are structured and never carry secrets, whatever the caller passes."""

from __future__ import annotations

import io
import json
import logging

from orchestrator import logs

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLWJ5dGVz"
AGORA = "007eJxTYBBbsMMnKq7p9Hf/HcIX5kce9b518kCiQgSr5Zrp4X1Tu6UUGCzNDZwdjU1TUs0Mkk1MzExMk5ISUy0S"


def test_secret_keys_and_secret_looking_values_are_redacted() -> None:
    stream = io.StringIO()
    logs.configure("json", "info")
    logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]
    log = logs.get_logger("test")
    log.info(
        "request",
        authorization=f"Bearer {JWT}",
        token="device-token-123",
        note=f"header was {JWT}",
        nested={"voip_token": "abc", "ok": 1},
        agora=AGORA,
    )
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["event"] == "request"
    text = json.dumps(line)
    for secret in (JWT, "device-token-123", '"abc"', AGORA):
        assert secret not in text
    assert line["nested"]["ok"] == 1 and line["token"] == "[redacted]"
