"""WireGuard keys of this host: made here, stored mode 0600, never sent anywhere.

Only the public key leaves the machine (in its registration with the edge). Keys are
Curve25519; humans and the registry see them in base64 like `wg`, the UAPI wants hex.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

PRIVATE_KEY_FILE = "private.key"


def generate_private() -> bytes:
    return X25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def public_of(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def from_b64(text: str) -> bytes:
    key = base64.b64decode(text, validate=True)
    if len(key) != 32:
        raise ValueError(f"a WireGuard key is 32 bytes, got {len(key)}")
    return key


def load_or_create(directory: Path) -> bytes:
    """This host's private key from `directory`, created (0600) on first use."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / PRIVATE_KEY_FILE
    if path.exists():
        return from_b64(path.read_text().strip())
    private = generate_private()
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(b64(private) + "\n")
    os.replace(path.with_suffix(".tmp"), path)
    return private
