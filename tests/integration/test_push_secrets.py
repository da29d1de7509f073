"""No device token, JWT, access token or key in any log record or result, whatever happens."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
import structlog

from orchestrator.adapters.push.apns import ApnsProvider
from orchestrator.adapters.push.fcm import FcmProvider
from orchestrator.config import Settings
from orchestrator.domain.model import PushKind
from orchestrator.domain.push import Accepted
from tests.fakes.apns_server import FakeApns
from tests.fakes.fcm_server import FakeFcm
from tests.fakes.keys import APNS_BUNDLE_ID, write_apns_key, write_service_account, write_tls
from tests.fakes.messages import android, ring_ios

APNS_CASES = ("ok", "bad", "gone", "throttle", "error", "expired", "hang", "goaway", "drop")
FCM_CASES = ("ok", "unregistered", "invalid", "mismatch", "throttle", "unavailable", "hang")


def everything_logged(caplog: pytest.LogCaptureFixture, events: list[Any]) -> str:
    """Library records (stdlib) and our structlog events as passed, i.e. before redaction."""
    formatter = logging.Formatter()
    records = [f"{r.__dict__} {formatter.format(r)}" for r in caplog.records]
    return "\n".join(records + [repr(e) for e in events])


async def test_no_secret_reaches_logs_or_results(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # As in production (orchestrator.logs.configure): the HPACK codec logs raw headers at DEBUG.
    for noisy in ("hpack", "h2"):
        caplog.set_level(logging.WARNING, logger=noisy)

    key = write_apns_key(tmp_path)
    _, cert, ca_file = write_tls(tmp_path)
    apns_fake = await FakeApns(key, APNS_BUNDLE_ID, cert).start()
    fcm_fake = await FakeFcm().start()
    fcm_fake.account = write_service_account(tmp_path, fcm_fake.token_uri)
    settings = Settings(
        apns_key_file=str(key.path),
        apns_key_id=key.key_id,
        apns_team_id=key.team_id,
        apns_bundle_id=APNS_BUNDLE_ID,
        apns_endpoint=apns_fake.endpoint,
        apns_ca_file=str(ca_file),
        fcm_service_account_file=str(fcm_fake.account.path),
        fcm_endpoint=fcm_fake.base_url,
        push_timeout_seconds=0.5,
    )
    apns, fcm = ApnsProvider(settings), FcmProvider(settings)
    tokens: list[str] = []
    results: list[object] = []
    with structlog.testing.capture_logs() as events:
        try:
            await _run(apns, fcm, fcm_fake, tokens, results)
        finally:
            await apns.close()
            await fcm.close()
            await apns_fake.close()
            await fcm_fake.close()

    assert sum(isinstance(r, Accepted) for r in results) == 4  # ok, expired, ok, ok after 401
    assert any(e["event"] == "h2_goaway" for e in events)  # our own logging was captured
    secrets = [t.split("-", 1)[1] for t in tokens]  # the unique part of each device token
    secrets += [r.jwt for r in apns_fake.requests] + [r.access_token for r in fcm_fake.requests]
    key_lines = key.path.read_text().splitlines()[1:-1]
    account_key = fcm_fake.account.path.read_text()
    secrets += [*key_lines, account_key[account_key.index("MII") :][:40]]
    logged = everything_logged(caplog, events)
    shown = repr(results)
    for secret in secrets:
        assert secret not in logged
        assert secret not in shown


async def _run(
    apns: ApnsProvider,
    fcm: FcmProvider,
    fcm_fake: FakeFcm,
    tokens: list[str],
    results: list[object],
) -> None:
    for case in APNS_CASES:
        tokens.append(f"{case}-{uuid.uuid4().hex}")
        results.append(await apns.send(ring_ios(tokens[-1])))
    for case in FCM_CASES:
        tokens.append(f"{case}-{uuid.uuid4().hex}")
        results.append(await fcm.send(android(PushKind.RING, tokens[-1])))
    fcm_fake.revoke_tokens()  # a 401 and a token refresh, too
    tokens.append(f"ok-{uuid.uuid4().hex}")
    results.append(await fcm.send(android(PushKind.RING, tokens[-1])))
