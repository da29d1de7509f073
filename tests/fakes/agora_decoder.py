"""An independent decoder of Agora tokens (006 and 007) for tests: parse, then check the HMAC.

Written from the wire format in tests/data/agora-token-vectors.json, not from the builder.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import zlib
from dataclasses import dataclass, field


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated token")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u16(self) -> int:
        return int(struct.unpack("<H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def str16(self) -> bytes:
        return self.take(self.u16())

    def map32(self) -> dict[int, int]:
        return {self.u16(): self.u32() for _ in range(self.u16())}

    def rest(self) -> bytes:
        return self.data[self.pos :]


@dataclass
class Service:
    type: int
    privileges: dict[int, int]
    channel: str = ""
    uid: str = ""
    user_id: str = ""


@dataclass
class Token007:
    signature: bytes
    signing_info: bytes
    app_id: str
    issue_ts: int
    expire: int
    salt: int
    services: dict[int, Service] = field(default_factory=dict)

    def signature_valid(self, app_certificate: str) -> bool:
        key = hmac.new(struct.pack("<I", self.issue_ts), app_certificate.encode(), hashlib.sha256)
        key = hmac.new(struct.pack("<I", self.salt), key.digest(), hashlib.sha256)
        expected = hmac.new(key.digest(), self.signing_info, hashlib.sha256).digest()
        return hmac.compare_digest(expected, self.signature)


def decode_007(token: str) -> Token007:
    assert token.startswith("007"), token[:3]
    reader = Reader(zlib.decompress(base64.b64decode(token[3:], validate=True)))
    signature = reader.str16()
    info = reader.rest()
    r = Reader(info)
    decoded = Token007(signature, info, r.str16().decode(), r.u32(), r.u32(), r.u32())
    for _ in range(r.u16()):
        kind = r.u16()
        service = Service(kind, r.map32())
        if kind == 1:
            service.channel, service.uid = r.str16().decode(), r.str16().decode()
        elif kind == 2:
            service.user_id = r.str16().decode()
        else:
            raise ValueError(f"unknown service type {kind}")
        decoded.services[kind] = service
    assert not r.rest(), "trailing bytes"
    return decoded


@dataclass
class Token006:
    app_id: str
    signature: bytes
    crc_channel: int
    crc_uid: int
    message: bytes
    salt: int
    ts: int
    privileges: dict[int, int]

    def valid_for(self, app_certificate: str, channel: str, uid: str) -> bool:
        signed = self.app_id.encode() + channel.encode() + uid.encode() + self.message
        expected = hmac.new(app_certificate.encode(), signed, hashlib.sha256).digest()
        return (
            hmac.compare_digest(expected, self.signature)
            and self.crc_channel == zlib.crc32(channel.encode())
            and self.crc_uid == zlib.crc32(uid.encode())
        )


def decode_006(token: str) -> Token006:
    assert token.startswith("006"), token[:3]
    app_id = token[3:35]
    r = Reader(base64.b64decode(token[35:], validate=True))
    signature, crc_channel, crc_uid, message = r.str16(), r.u32(), r.u32(), r.str16()
    m = Reader(message)
    salt, ts, privileges = m.u32(), m.u32(), m.map32()
    return Token006(app_id, signature, crc_channel, crc_uid, message, salt, ts, privileges)
