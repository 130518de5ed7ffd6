"""Secrets people hold: join tokens (a machine joins) and admin tokens (a person administers).

Formats (the id is public, the secret is 32 random bytes; only SHA-256(secret) is stored):

    admin:  vcadm_<id>_<secret>
    join:   vcjoin_<payload>_<id>_<secret>
            payload = base64url(JSON {"c": cluster, "u": [api urls], "k": cluster join public key})
            (the payload tells a new machine where to send its join and whom to seal it to,
            vcapp/joinbox.py; it is not secret)

id: 8 lowercase hex chars; secret: 43 base64url chars. Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass

SECRET_BYTES = 32
ID_HEX = 8
ADMIN_RE = re.compile(r"^vcadm_([0-9a-f]{8})_([A-Za-z0-9\-~]{43})$")
JOIN_RE = re.compile(r"^vcjoin_([A-Za-z0-9\-~]+)_([0-9a-f]{8})_([A-Za-z0-9\-~]{43})$")


class TokenError(ValueError):
    """A token that cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class AdminToken:
    id: str
    secret: str

    def __str__(self) -> str:
        return f"vcadm_{self.id}_{self.secret}"


@dataclass(frozen=True)
class JoinToken:
    cluster: str
    api_urls: tuple[str, ...]
    id: str
    secret: str
    join_key: str = ""  # the cluster's join public key, base64 ("" in tokens made before sealed joins)

    def __str__(self) -> str:
        fields = {"c": self.cluster, "u": list(self.api_urls)} | ({"k": self.join_key} if self.join_key else {})
        payload = _b64(json.dumps(fields, separators=(",", ":")).encode())
        return f"vcjoin_{payload}_{self.id}_{self.secret}"


def _b64(raw: bytes) -> str:
    # base64url, but "_" is our field separator: use "~" instead (also URL-safe).
    return base64.urlsafe_b64encode(raw).decode().rstrip("=").replace("_", "~")


def _unb64(text: str) -> bytes:
    text = text.replace("~", "_")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _new_id() -> str:
    return secrets.token_hex(ID_HEX // 2)


def _new_secret() -> str:
    return _b64(secrets.token_bytes(SECRET_BYTES))


def new_admin_token() -> AdminToken:
    return AdminToken(_new_id(), _new_secret())


def new_join_token(cluster: str, api_urls: list[str], join_key: str = "") -> JoinToken:
    return JoinToken(cluster, tuple(api_urls), _new_id(), _new_secret(), join_key)


def hash_secret(secret: str) -> str:
    """Tokens are 256-bit random: a plain SHA-256 is the right hash (no password stretching needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def parse_admin_token(text: str) -> AdminToken:
    m = ADMIN_RE.match(text.strip())
    if not m:
        raise TokenError("that is not a vcapp admin token (they look like vcadm_<id>_<secret>); "
                         "create one with `vcapp tokens admin create`")
    return AdminToken(m.group(1), m.group(2))


def parse_join_token(text: str) -> JoinToken:
    m = JOIN_RE.match(text.strip())
    if not m:
        raise TokenError("that is not a vcapp join token (they look like vcjoin_<...>_<id>_<secret>); "
                         "create one on a cluster machine with `vcapp tokens join create`")
    try:
        payload = json.loads(_unb64(m.group(1)))
        cluster, urls, join_key = payload["c"], payload["u"], payload.get("k", "")
    except (ValueError, KeyError, TypeError):
        raise TokenError("the join token is damaged (its cluster part does not decode); copy it again") from None
    if not isinstance(cluster, str) or not isinstance(urls, list) or not urls:
        raise TokenError("the join token names no cluster address; create a new one")
    if not isinstance(join_key, str):
        raise TokenError("the join token is damaged (its cluster key does not decode); copy it again")
    return JoinToken(cluster, tuple(urls), m.group(2), m.group(3), join_key)
