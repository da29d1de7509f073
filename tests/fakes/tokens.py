"""Device tokens in the formats the product accepts, that the fakes answer by a prefix.

APNs tokens must be 64–200 hexadecimal characters (abuse limits, CA031), so a behaviour prefix
such as "ok" or "gone" cannot be spelt out: it is hex-encoded with its "-" in front of random
hex. The fakes decode it (`behaviour`); a token spelt the old way ("ok-…") still works for FCM.
"""

from __future__ import annotations

import re
import uuid


def hex_token(prefix: str) -> str:
    """A unique 70+ character lowercase hex token that the fakes answer as `prefix`."""
    return (prefix + "-").encode().hex() + uuid.uuid4().hex + uuid.uuid4().hex


def apns_hex(name: str) -> str:
    """`name` ("ok-ring") as a deterministic APNs-format token the fakes answer by its prefix;
    a name that is already hex is returned as it is."""
    if re.fullmatch(r"[0-9a-f]{64,200}", name):
        return name
    return (name + "-").encode().hex().ljust(64, "0")


def behaviour(token: str) -> str:
    """The prefix a fake answers `token` by: hex-encoded (hex_token) or spelt out ("ok-…")."""
    head = token[:64]
    if len(head) % 2 == 0:
        try:
            raw = bytes.fromhex(head)
        except ValueError:
            raw = b""
        word, dash, _ = raw.partition(b"-")
        if dash and word.isalpha() and word.isascii():
            return word.decode()
    return token.split("-", 1)[0]
