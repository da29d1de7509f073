"""Push token formats (abuse limits), the same as the database's CHECK and
register_push_device (SQLSTATE CA031). Providers check again before a token goes into a
request: an APNs token is part of the HTTP/2 `:path` (`../`, `?`, CR/LF would change the
request), an FCM token part of the JSON body. The providers check the characters and the
maximum length (what could change a request); the minimum lengths are the registration's rule.
Either case of hex is accepted here; the database stores APNs tokens lowercase.
"""

from __future__ import annotations

import re

APNS_TOKEN = re.compile(r"[0-9A-Fa-f]{1,200}")
FCM_TOKEN = re.compile(r"[A-Za-z0-9_:\-]{1,4096}")


def apns_token_ok(token: str) -> bool:
    return APNS_TOKEN.fullmatch(token) is not None


def fcm_token_ok(token: str) -> bool:
    return FCM_TOKEN.fullmatch(token) is not None
