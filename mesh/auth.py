"""Mesh join credentials: who may register a WireGuard key with the edge.

The cluster and its edge share a secret mesh key K. When a machine joins, the control plane
hands it a credential bound to its node name and mesh IP; the edge checks it without asking
etcd, so the edge stays a small, stateless-enough box:

    credential = hex(HMAC-SHA256(K, f"{node}|{mesh_ip}"))      64 hex characters
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_BYTES = 32


def new_mesh_key() -> bytes:
    """A fresh cluster mesh key (the control plane makes one per cluster)."""
    return secrets.token_bytes(KEY_BYTES)


def issue_credential(key: bytes, node: str, mesh_ip: str) -> str:
    """The credential a machine presents to register `node` at `mesh_ip`."""
    if not key:
        raise ValueError("the mesh key is empty; give the cluster's mesh key")
    return hmac.new(key, f"{node}|{mesh_ip}".encode(), hashlib.sha256).hexdigest()


def verify_credential(key: bytes, node: str, mesh_ip: str, credential: str) -> bool:
    """True if `credential` was issued with `key` for exactly this node and mesh IP."""
    if not key or not isinstance(credential, str):
        return False
    expected = issue_credential(key, node, mesh_ip)
    return hmac.compare_digest(expected.encode(), credential.strip().lower().encode())


def load_mesh_key(text: str) -> bytes:
    """Parse a mesh key as stored in a file or the environment: hex (64 chars) or raw text."""
    text = text.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = text.encode()
    if len(key) < 16:
        raise ValueError("the mesh key is too short (want 32 random bytes as 64 hex characters)")
    return key
