"""Mesh join credentials: who may register a WireGuard key with the edge.

The cluster and its edge share a secret mesh key K. When a machine joins, the control plane
hands it a credential bound to its node name and mesh IP; the edge checks it without asking
etcd, so the edge stays a small, stateless-enough box:

    credential = hex(HMAC-SHA256(K, f"{node}|{mesh_ip}"))      64 hex characters

The credential itself never goes on the wire (the coordination service is plain HTTP until
a TLS proxy fronts it). Each request carries a proof of it, bound to the action, the time
and the body, so a request seen on the wire cannot be turned into a registration of
another key:

    X-Mesh-Node: <node>    X-Mesh-IP: <mesh ip>    X-Mesh-Time: <unix seconds>
    X-Mesh-Proof: hex(HMAC-SHA256(credential, f"{action}|{node}|{mesh_ip}|{time}|{hex(SHA256(body))}"))

action is "register", "relayed", "peers" or "relay"; the edge recomputes the credential from K.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Mapping

KEY_BYTES = 32
# Clock skew tolerated between a machine and the edge; NTP keeps real machines within a
# second, and a replay inside the window can only repeat what the machine itself asked.
PROOF_WINDOW = 120


def new_mesh_key() -> bytes:
    """A fresh cluster mesh key (the control plane makes one per cluster)."""
    return secrets.token_bytes(KEY_BYTES)


def issue_credential(key: bytes, node: str, mesh_ip: str) -> str:
    """The credential a machine presents to register `node` at `mesh_ip`."""
    if not key:
        raise ValueError("the mesh key is empty; give the cluster's mesh key")
    return hmac.new(key, f"{node}|{mesh_ip}".encode(), hashlib.sha256).hexdigest()


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


def _proof(credential: str, action: str, node: str, mesh_ip: str, stamp: str, body: bytes) -> str:
    msg = f"{action}|{node}|{mesh_ip}|{stamp}|{hashlib.sha256(body).hexdigest()}"
    return hmac.new(credential.strip().lower().encode(), msg.encode(), hashlib.sha256).hexdigest()


def sign(credential: str, action: str, node: str, mesh_ip: str, body: bytes = b"",
         now: float | None = None) -> dict[str, str]:
    """Headers proving possession of `credential` for one request."""
    stamp = str(int(time.time() if now is None else now))
    return {"X-Mesh-Node": node, "X-Mesh-IP": mesh_ip, "X-Mesh-Time": stamp,
            "X-Mesh-Proof": _proof(credential, action, node, mesh_ip, stamp, body)}


def proof_problem(key: bytes, action: str, headers: Mapping[str, str], body: bytes = b"",
                  now: float | None = None) -> str | None:
    """Why a signed request is not acceptable, or None if it proves a valid credential."""
    node, ip = headers.get("X-Mesh-Node") or "", headers.get("X-Mesh-IP") or ""
    stamp, proof = headers.get("X-Mesh-Time") or "", headers.get("X-Mesh-Proof") or ""
    if not (node and ip and stamp.isdigit() and proof):
        return "missing X-Mesh-Node, X-Mesh-IP, X-Mesh-Time or X-Mesh-Proof"
    skew = abs((time.time() if now is None else now) - int(stamp))
    if skew > PROOF_WINDOW:
        return f"request time is {skew:.0f}s away from the edge's clock; fix this machine's clock (NTP)"
    expected = _proof(issue_credential(key, node, ip), action, node, ip, stamp, body)
    if not hmac.compare_digest(expected.encode(), proof.lower().encode()):
        return ("credential does not verify for this node and mesh IP; "
                "join the cluster again to get a new one")
    return None
