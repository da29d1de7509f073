"""The APNs provider token: an ES256 JWT signed with the team's .p8 key.

Apple rejects a token older than 60 minutes (403 ExpiredProviderToken) and one replaced more
often than every 20 minutes (429 TooManyProviderTokenUpdates), so it is minted once per
`refresh_seconds` (40 min) and re-minted early only when APNs says the one we sent expired.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from orchestrator.config import ConfigError

DEFAULT_REFRESH_SECONDS = 40 * 60


class ProviderToken:
    def __init__(
        self,
        key_pem: bytes,
        key_id: str,
        team_id: str,
        *,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        clock: Callable[[], float] = time.time,  # wall clock: `iat` is checked by Apple
    ) -> None:
        try:
            key = load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            key = None
        # Never echo the key material: say what is wrong with it only.
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ConfigError("APNS_KEY_FILE must be an APNs auth key (.p8, EC P-256, PEM)")
        self._key = key
        self._key_id = key_id
        self._team_id = team_id
        self._refresh = refresh_seconds
        self._clock = clock
        self._token: str | None = None
        self._issued_at = 0.0

    @classmethod
    def from_file(cls, path: str, key_id: str, team_id: str) -> ProviderToken:
        return cls(Path(path).read_bytes(), key_id, team_id)

    def current(self) -> str:
        now = self._clock()
        if self._token is None or now - self._issued_at >= self._refresh:
            self._issued_at = now
            self._token = jwt.encode(
                {"iss": self._team_id, "iat": int(now)},
                self._key,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
        return self._token

    def invalidate(self, token: str) -> None:
        """APNs said `token` expired. Only the token still in use is dropped, so that many
        concurrent 403s cause one re-mint, not one each (TooManyProviderTokenUpdates)."""
        if token == self._token:
            self._token = None
