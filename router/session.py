"""Browser sessions for token-protected apps: the signed cookie value that stands for a token.

Pure functions, no I/O. The cookie never holds the raw token. It holds the token's hash,
the app it opens and when it was issued, signed with a per-cluster key (HMAC-SHA256):

    v1 . <app> . <token sha256 hex> . <issued unix s> . <hmac-sha256 base64url>
                                                          └ over "v1.<app>.<hash>.<issued>"

Because it names the token's hash, every request with the cookie is checked against the
token record again (through the same cached lookup as a bearer token), so revoking or
expiring the token ends the session too. A reader of the token store who sees hashes still
cannot mint a cookie without the cluster key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from router.tokens import is_hash

VERSION = "v1"
COOKIE_NAME = "__Host-vcapp-session"  # __Host-: browsers insist on Secure, Path=/, no Domain
# A session outlives no token, and lasts at most this long (browsers then ask again).
MAX_SESSION_S = 30 * 24 * 3600
MIN_KEY_BYTES = 16


def _mac(key: bytes, payload: str) -> str:
    digest = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _check_key(key: bytes) -> None:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the session key must be at least {MIN_KEY_BYTES} random bytes")


def sign(key: bytes, app: str, token_hash: str, issued: int) -> str:
    """The cookie value for a session on `app` opened with the token of hash `token_hash`."""
    _check_key(key)
    payload = f"{VERSION}.{app}.{token_hash}.{issued}"
    return f"{payload}.{_mac(key, payload)}"


def verify(key: bytes, value: str, app: str, now: float) -> str | None:
    """The token hash a cookie value stands for, if it is ours, for `app` and not too old."""
    _check_key(key)
    parts = value.split(".")
    if len(parts) != 5 or parts[0] != VERSION:
        return None
    _, cookie_app, token_hash, issued, mac = parts
    payload = ".".join(parts[:4])
    if not hmac.compare_digest(mac, _mac(key, payload)):
        return None
    if cookie_app != app or not is_hash(token_hash) or not issued.isdigit():
        return None
    if now - int(issued) > MAX_SESSION_S:
        return None
    return token_hash
