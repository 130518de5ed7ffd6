"""End-user access tokens: their format, generation, hashing and the record kept per token.

Pure functions, no I/O. A token is shown to its owner once; the cluster keeps only its
SHA-256 hash (hex), so a reader of the store cannot use what it reads.

    vca_<43 chars: 32 random bytes, URL-safe base64 without padding>
    └┬┘
     prefix: lets people and secret scanners recognise a vcapp token
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass

PREFIX = "vca_"
RANDOM_BYTES = 32
_BODY_LEN = 43  # len(urlsafe_b64encode(32 bytes)) without the "=" padding
_TOKEN_RE = re.compile(r"^vca_[A-Za-z0-9_-]{%d}$" % _BODY_LEN)
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


class TokenFormatError(ValueError):
    """A string that is not a vcapp access token; the message says what was expected."""


@dataclass(frozen=True)
class TokenRecord:
    """What the cluster stores about a token (never the token itself).

    expires_at: Unix time in seconds, or None for a token that does not expire."""

    id: str
    app: str
    name: str
    expires_at: float | None = None
    revoked: bool = False

    def problem(self, app: str, now: float) -> str | None:
        """Why this token does not open `app` at time `now` (None: it does)."""
        if self.revoked:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        if self.app != app:
            return "wrong-app"
        return None


def generate() -> str:
    """A new random token. Show it once; store only hash_token(token)."""
    body = base64.urlsafe_b64encode(secrets.token_bytes(RANDOM_BYTES)).rstrip(b"=").decode()
    return PREFIX + body


def is_token(text: str) -> bool:
    return bool(_TOKEN_RE.fullmatch(text))


def parse(text: str) -> str:
    """The token in `text` (surrounding whitespace ignored), or TokenFormatError."""
    token = text.strip()
    if not token.startswith(PREFIX):
        raise TokenFormatError(f"an access token starts with {PREFIX!r}; check that you copied all of it")
    if not is_token(token):
        raise TokenFormatError(
            f"an access token is {PREFIX!r} followed by {_BODY_LEN} letters, digits, '-' or '_'; "
            "check that you copied all of it"
        )
    return token


def hash_token(token: str) -> str:
    """The SHA-256 of the token, hex: the only form the cluster stores."""
    return hashlib.sha256(token.encode()).hexdigest()


def is_hash(text: str) -> bool:
    return bool(_HASH_RE.fullmatch(text))


def new_id() -> str:
    """A short public id for a token record (shown in `tokens list`, used to revoke)."""
    return "tok_" + secrets.token_hex(6)
