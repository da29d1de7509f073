"""Huffman codes of long header values, kept per HTTP/2 connection (issue 14).

h2 always sends `authorization` never-indexed (its defence against compression attacks), so
the APNs provider JWT, the same ~300 bytes for up to an hour, went through hpack's pure-Python
Huffman coder on every push (send_headers 148 → 90 µs; about 9 % of the worker's CPU per
APNs push in the bench). The bytes on the wire are unchanged; only the coding of a value seen
before is skipped.
"""

from __future__ import annotations

from typing import Any, Protocol

# Only values this long are kept: the JWT. Per-push values (path, apns-id) are shorter and
# would only fill the memo.
MIN_LENGTH = 100
MAX_ENTRIES = 8  # a JWT is re-minted every ~50 minutes; one or two are live at a time


class _Coder(Protocol):
    def encode(self, bytes_to_encode: bytes | None) -> bytes: ...


class MemoHuffman:
    def __init__(self, coder: _Coder) -> None:
        self._coder = coder
        self._memo: dict[bytes, bytes] = {}

    def encode(self, bytes_to_encode: bytes | None) -> bytes:
        if bytes_to_encode is None or len(bytes_to_encode) < MIN_LENGTH:
            return self._coder.encode(bytes_to_encode)
        coded = self._memo.get(bytes_to_encode)
        if coded is None:
            coded = self._coder.encode(bytes_to_encode)
            if len(self._memo) >= MAX_ENTRIES:
                self._memo.clear()
            self._memo[bytes_to_encode] = coded
        return coded


def memoize_huffman(encoder: Any) -> None:
    """Wrap an hpack Encoder's Huffman coder (its `huffman_coder`, hpack 4.x)."""
    coder = getattr(encoder, "huffman_coder", None)
    if coder is not None and not isinstance(coder, MemoHuffman):
        encoder.huffman_coder = MemoHuffman(coder)
