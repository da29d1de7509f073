"""The in-house AccessToken2 builder and the 006 wrapper against Agora's official vectors."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.adapters.agora.token_builder import (
    PUBLISHER,
    RtcService,
    RtmService,
    TokenInputError,
    build_access_token2,
    build_access_token_006,
    build_publisher_token,
)
from tests.fakes.agora_decoder import decode_006, decode_007

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "data" / "agora-token-vectors.json").read_text()
)
COMMON = VECTORS["common_inputs"]
APP_ID, CERT, CHANNEL, UID = (
    COMMON["app_id"], COMMON["app_certificate"], COMMON["channel"], COMMON["uid"]
)  # fmt: skip
CASES_007 = VECTORS["access_token2_007"]["cases"]
CASES_006 = VECTORS["access_token_006"]["cases"]
PRIV_EXPIRE_006 = VECTORS["access_token_006"]["inputs"]["privilege_expire_ts"]


def payload(token: str) -> bytes:
    return zlib.decompress(base64.b64decode(token[3:]))


def token2(*services: RtcService | RtmService) -> str:
    inputs = VECTORS["access_token2_007"]["inputs"]
    return build_access_token2(
        APP_ID, CERT, issue_ts=inputs["issue_ts"], expire=inputs["expire"], salt=1,
        services=list(services),
    )  # fmt: skip


def test_007_rtc_uid_matches_python_vector_exactly() -> None:
    expected = CASES_007[0]["token"]
    assert token2(RtcService(CHANNEL, UID, {1: 600})) == expected
    # The same string for the account "2882341273".
    assert token2(RtcService(CHANNEL, str(UID), {1: 600})) == expected


def test_007_rtc_uid_zero_matches_python_vector_exactly() -> None:
    assert token2(RtcService(CHANNEL, 0, {1: 600})) == CASES_007[1]["token"]


def test_007_rtm_matches_go_vector_payload() -> None:
    ours = token2(RtmService("test_user", {1: 600}))
    assert payload(ours) == payload(CASES_007[2]["token"])


def test_006_vectors_exactly() -> None:
    common = {"channel": CHANNEL, "ts": 1111111, "salt": 1}
    join = {1: PRIV_EXPIRE_006}
    assert (
        build_access_token_006(APP_ID, CERT, uid=UID, privileges=join, **common)
        == (CASES_006[0]["token"])
    )
    assert (
        build_access_token_006(APP_ID, CERT, uid=0, privileges=join, **common)
        == (CASES_006[1]["token"])
    )
    publisher = dict.fromkeys(PUBLISHER, PRIV_EXPIRE_006)
    assert (
        build_access_token_006(APP_ID, CERT, uid=UID, privileges=publisher, **common)
        == (CASES_006[2]["token"])
    )


def test_decoder_reads_every_vector() -> None:
    for case in CASES_007:
        decoded = decode_007(case["token"])
        assert decoded.signature_valid(CERT), case["name"]
        assert (decoded.app_id, decoded.issue_ts, decoded.expire, decoded.salt) == (
            APP_ID, 1111111, 600, 1
        )  # fmt: skip
    assert not decode_007(CASES_007[0]["token"]).signature_valid(CERT.lower())
    rtc = decode_007(CASES_007[0]["token"]).services[1]
    assert (rtc.channel, rtc.uid, rtc.privileges) == (CHANNEL, str(UID), {1: 600})
    assert decode_007(CASES_007[2]["token"]).services[2].user_id == "test_user"
    first = decode_006(CASES_006[0]["token"])
    assert first.valid_for(CERT, CHANNEL, str(UID)) and not first.valid_for(CERT, CHANNEL, "1")
    assert decode_006(CASES_006[1]["token"]).valid_for(CERT, CHANNEL, "")


@pytest.mark.parametrize(("version", "uid"), [("007", 1), ("007", 2), ("006", 1), ("006", 2)])
def test_publisher_token_expiries_are_equal(version: str, uid: int) -> None:
    channel = "0b9e6b7e-8f7c-4d5c-9a51-2f0d3c1e4a77"
    token = build_publisher_token(
        version, APP_ID, CERT, channel=channel, uid=uid, issue_ts=1_700_000_000,
        expire_ts=1_700_000_300,
    )  # fmt: skip
    if version == "007":
        decoded = decode_007(token)
        assert decoded.signature_valid(CERT)
        assert decoded.app_id == APP_ID and decoded.expire == 300
        assert decoded.issue_ts == 1_700_000_000
        rtc = decoded.services[1]
        assert (rtc.channel, rtc.uid) == (channel, str(uid))
        assert rtc.privileges == {1: 300, 2: 300, 3: 300, 4: 300}
    else:
        old = decode_006(token)
        assert old.valid_for(CERT, channel, str(uid)) and old.app_id == APP_ID
        assert old.ts == 1_700_000_300
        assert old.privileges == {1: 1_700_000_300, 2: 1_700_000_300, 3: 1_700_000_300,
                                  4: 1_700_000_300}  # fmt: skip


def test_salt_is_random_when_not_given() -> None:
    kwargs: dict[str, Any] = {"channel": "c", "uid": 1, "issue_ts": 100, "expire_ts": 400}
    salts = {decode_007(build_publisher_token("007", APP_ID, CERT, **kwargs)).salt
             for _ in range(20)}  # fmt: skip
    assert len(salts) > 1 and all(1 <= s <= 99_999_999 for s in salts)


@pytest.mark.parametrize(
    "change",
    [
        {"app_id": "970CA35de60c44645bbae8a215061b3"},  # 31 chars
        {"app_id": "970CA35de60c44645bbae8a215061b3g"},  # not hex
        {"cert": "x" * 32},
        {"channel": ""},
        {"channel": "x" * 64},  # Agora: less than 64 bytes
        {"channel": "café"},  # outside the 89-character set
        {"uid": 0},  # the wildcard is never issued
        {"uid": 2**32},
        {"uid": -1},
        {"expire_ts": 100},  # not after issue
        {"expire_ts": 100 + 86_401},  # longer than Agora's 24 h
        {"version": "005"},
    ],
)
def test_invalid_inputs_are_refused(change: dict[str, Any]) -> None:
    args: dict[str, Any] = {
        "version": "007", "app_id": APP_ID, "cert": CERT, "channel": CHANNEL, "uid": 1,
        "issue_ts": 100, "expire_ts": 400,
    } | change  # fmt: skip
    with pytest.raises(TokenInputError) as caught:
        build_publisher_token(
            args["version"], args["app_id"], args["cert"], channel=args["channel"],
            uid=args["uid"], issue_ts=args["issue_ts"], expire_ts=args["expire_ts"],
        )  # fmt: skip
    assert CERT not in str(caught.value)


def test_builder_level_checks() -> None:
    with pytest.raises(TokenInputError):
        build_access_token2(APP_ID, CERT, issue_ts=1, expire=1, salt=0, services=[])
    with pytest.raises(TokenInputError):  # the same service type twice
        token2(RtcService(CHANNEL, 1, {1: 1}), RtcService(CHANNEL, 2, {1: 1}))
    with pytest.raises(TokenInputError):
        token2(RtcService(CHANNEL, 1, {1: 2**32}))
    with pytest.raises(TokenInputError):
        build_access_token_006(APP_ID, CERT, channel=CHANNEL, uid=1, ts=1, salt=10**8,
                               privileges={})  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    uid=st.integers(1, 2**32 - 1),
    issue_ts=st.integers(0, 2**32 - 86_401),
    ttl=st.integers(1, 86_400),
    channel=st.from_regex(r"[A-Za-z0-9 !#$%&()+\-:;<=.>?@\[\]^_{}|~,]{1,63}", fullmatch=True),
    version=st.sampled_from(["006", "007"]),
)
def test_round_trip_property(uid: int, issue_ts: int, ttl: int, channel: str, version: str) -> None:
    token = build_publisher_token(
        version, APP_ID, CERT, channel=channel, uid=uid, issue_ts=issue_ts,
        expire_ts=issue_ts + ttl,
    )  # fmt: skip
    if version == "007":
        decoded = decode_007(token)
        assert decoded.signature_valid(CERT) and decoded.expire == ttl
        assert decoded.services[1].channel == channel and decoded.services[1].uid == str(uid)
        assert set(decoded.services[1].privileges.values()) == {ttl}
    else:
        old = decode_006(token)
        assert old.valid_for(CERT, channel, str(uid)) and old.ts == issue_ts + ttl
        assert set(old.privileges.values()) == {issue_ts + ttl}
