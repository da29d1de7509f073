"""Agora RTC tokens: an in-house AccessToken2 (`007`) builder and a typed `006` wrapper.

Pure functions over validated inputs; the wire format is documented in the official vectors
(`tests/data/agora-token-vectors.json`). The certificate only ever feeds HMAC keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from agora_token_builder.AccessToken import AccessToken

HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
# Agora's 89-character set for channel names (letters, digits, space and 26 symbols).
CHANNEL = re.compile(r"^[A-Za-z0-9 !#$%&()+\-:;<=.>?@\[\]^_{}|~,]{1,63}$")
U32_MAX = 2**32 - 1
MAX_VALIDITY = 24 * 3600  # Agora refuses longer tokens
SALT_MAX = 99_999_999
VERSIONS = ("006", "007")


class TokenInputError(ValueError):
    """An input the token formats cannot carry; the message never contains the certificate."""


class RtcPrivilege(IntEnum):
    JOIN_CHANNEL = 1
    PUBLISH_AUDIO = 2
    PUBLISH_VIDEO = 3
    PUBLISH_DATA = 4


RTM_LOGIN = 1
PUBLISHER = tuple(RtcPrivilege)


def _u16(value: int) -> bytes:
    return struct.pack("<H", value)


def _u32(value: int) -> bytes:
    return struct.pack("<I", value)


def _str16(value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise TokenInputError("field longer than 65535 bytes")
    return _u16(len(value)) + value


def _map(privileges: Mapping[int, int]) -> bytes:
    out = _u16(len(privileges))
    for key in sorted(privileges):
        out += _u16(key) + _u32(privileges[key])
    return out


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value <= U32_MAX:
        raise TokenInputError(f"{name} must fit in an unsigned 32-bit integer")


def check_credentials(app_id: str, app_certificate: str) -> None:
    """Both are 32 hex characters in either case; the case is kept as given."""
    if not HEX32.match(app_id):
        raise TokenInputError("app id must be 32 hexadecimal characters")
    if not HEX32.match(app_certificate):
        raise TokenInputError("app certificate must be 32 hexadecimal characters")


def uid_string(uid: int | str) -> str:
    """An integer uid as Agora packs it (0, the wildcard, is the empty string); accounts as-is."""
    if isinstance(uid, int):
        _check_u32("uid", uid)
        return "" if uid == 0 else str(uid)
    if not 0 < len(uid.encode()) <= 255:
        raise TokenInputError("user account must be 1-255 bytes")
    return uid


def _check_privileges(privileges: Mapping[int, int]) -> None:
    for key, value in privileges.items():
        if not 0 < key <= 0xFFFF:
            raise TokenInputError("privilege keys must be 1-65535")
        _check_u32("privilege expiry", value)


@dataclass(frozen=True, slots=True)
class RtcService:
    channel: str
    uid: int | str
    privileges: Mapping[int, int] = field(default_factory=dict)
    type_id: int = 1

    def pack(self) -> bytes:
        if not CHANNEL.match(self.channel):
            raise TokenInputError("channel must be 1-63 characters from Agora's character set")
        _check_privileges(self.privileges)
        body = _str16(self.channel.encode()) + _str16(uid_string(self.uid).encode())
        return _u16(self.type_id) + _map(self.privileges) + body


@dataclass(frozen=True, slots=True)
class RtmService:
    user_id: str
    privileges: Mapping[int, int] = field(default_factory=dict)
    type_id: int = 2

    def pack(self) -> bytes:
        _check_privileges(self.privileges)
        return (
            _u16(self.type_id) + _map(self.privileges) + _str16(uid_string(self.user_id).encode())
        )


def build_access_token2(
    app_id: str,
    app_certificate: str,
    *,
    issue_ts: int,
    expire: int,
    salt: int,
    services: Sequence[RtcService | RtmService],
) -> str:
    """AccessToken2 (`007`); `expire` and privilege values are seconds relative to `issue_ts`."""
    check_credentials(app_id, app_certificate)
    _check_u32("issue_ts", issue_ts)
    if not 0 <= expire <= MAX_VALIDITY:
        raise TokenInputError("expire must be 0-86400 seconds")
    if not 1 <= salt <= SALT_MAX:
        raise TokenInputError("salt must be 1-99999999")
    types = [service.type_id for service in services]
    if not services or len(set(types)) != len(types):
        raise TokenInputError("need at least one service, each type at most once")
    info = _str16(app_id.encode()) + _u32(issue_ts) + _u32(expire) + _u32(salt)
    info += _u16(len(services))
    for service in sorted(services, key=lambda s: s.type_id):
        info += service.pack()
    key = hmac.new(_u32(issue_ts), app_certificate.encode(), hashlib.sha256).digest()
    key = hmac.new(_u32(salt), key, hashlib.sha256).digest()
    signature = hmac.new(key, info, hashlib.sha256).digest()
    return "007" + base64.b64encode(zlib.compress(_str16(signature) + info)).decode()


def build_access_token_006(
    app_id: str,
    app_certificate: str,
    *,
    channel: str,
    uid: int,
    ts: int,
    salt: int,
    privileges: Mapping[int, int],
) -> str:
    """`006` through agora-token-builder; `ts` (token expiry) and privileges are absolute."""
    check_credentials(app_id, app_certificate)
    if not CHANNEL.match(channel):
        raise TokenInputError("channel must be 1-63 characters from Agora's character set")
    uid_string(uid)
    _check_u32("ts", ts)
    _check_privileges(privileges)
    if not 1 <= salt <= SALT_MAX:
        raise TokenInputError("salt must be 1-99999999")
    token = AccessToken(app_id, app_certificate, channel, uid)
    token.ts = ts
    token.salt = salt
    for key, value in privileges.items():
        token.addPrivilege(key, value)
    result: str = token.build()
    return result


def build_publisher_token(
    version: str,
    app_id: str,
    app_certificate: str,
    *,
    channel: str,
    uid: int,
    issue_ts: int,
    expire_ts: int,
    salt: int | None = None,
) -> str:
    """An RTC publisher token whose token and privilege expiry are both `expire_ts`."""
    if uid == 0:
        raise TokenInputError("uid 0 is Agora's wildcard and is never issued")
    if not 0 < expire_ts - issue_ts <= MAX_VALIDITY:
        raise TokenInputError("expire_ts must be 1-86400 seconds after issue_ts")
    salt = secrets.randbelow(SALT_MAX) + 1 if salt is None else salt
    if version == "007":
        expire = expire_ts - issue_ts
        rtc = RtcService(channel, uid, dict.fromkeys(PUBLISHER, expire))
        return build_access_token2(
            app_id, app_certificate, issue_ts=issue_ts, expire=expire, salt=salt, services=[rtc]
        )
    if version == "006":
        return build_access_token_006(
            app_id,
            app_certificate,
            channel=channel,
            uid=uid,
            ts=expire_ts,
            salt=salt,
            privileges=dict.fromkeys(PUBLISHER, expire_ts),
        )
    raise TokenInputError(f"token version must be one of {', '.join(VERSIONS)}")
