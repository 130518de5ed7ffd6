"""The sealed join: a joining machine's request and the cluster's answer, readable only by the two.

A join crosses networks nobody vouches for: through the edge's plain-HTTP relay
(mesh/joinproxy.py) or straight to a machine's API on a LAN. Its request carries the join
token and its answer the cluster key and the machine's mesh credential, so both travel
sealed. The cluster has a join key pair derived from the cluster key (every machine can
open a join); its public half rides in every join token ("k", vcapp/tokens.py), the way k3s
pins its CA in its tokens. The joining machine makes a one-time X25519 key pair, seals its
request to the cluster's public key, and the answer is sealed under the same shared secret:
whoever relays or watches the join reads neither the token nor the key and cannot forge an
answer (only a holder of the cluster key can make one the machine opens).

    shared       = X25519(machine's one-time private key, cluster join public key)
    k_req, k_ans = HKDF-SHA256(shared, info = "vcapp join v1" | machine public | cluster public),
                   32 bytes each
    request   POST /v1/join  {"key": b64(machine public, 32 bytes),
                              "box": b64(nonce 12 | ChaCha20-Poly1305(k_req, nonce, JSON request))}
    answer    201 {"box": b64(nonce 12 | ChaCha20-Poly1305(k_ans, nonce, JSON answer))}
    refusal   4xx/5xx {"error": "..."} in clear: a reason holds no secret

Nonces are random: a machine may send the same request twice (retries) and a machine may
answer it twice, so a fixed nonce could repeat under one key. Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

INFO = b"vcapp join v1"
KEY_BYTES = 32
NONCE_BYTES = 12
# The purpose string the cluster's join private key is derived under (as vcapp/node/config.derive).
PURPOSE = "join"


class SealError(ValueError):
    """A box that cannot be opened: wrong key, tampered, or not a box at all."""


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise SealError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SealError(f"{what} is not base64") from None


def cluster_private(cluster_key: bytes) -> X25519PrivateKey:
    """The cluster's join private key: the same on every machine that holds the cluster key."""
    return X25519PrivateKey.from_private_bytes(hmac.new(cluster_key, PURPOSE.encode(), hashlib.sha256).digest())


def cluster_public(cluster_key: bytes) -> str:
    """The join public key that goes into join tokens, base64."""
    return _b64(_raw(cluster_private(cluster_key).public_key()))


def _keys(shared: bytes, machine_pub: bytes, cluster_pub: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(hashes.SHA256(), 2 * KEY_BYTES, salt=None, info=INFO + machine_pub + cluster_pub).derive(shared)
    return okm[:KEY_BYTES], okm[KEY_BYTES:]


def _seal(key: bytes, payload: dict) -> str:
    nonce = os.urandom(NONCE_BYTES)
    return _b64(nonce + ChaCha20Poly1305(key).encrypt(nonce, json.dumps(payload).encode(), None))


def _open(key: bytes, box: object) -> dict:
    raw = _unb64(box, "box")
    if len(raw) < NONCE_BYTES + 16:
        raise SealError("box is too short to be sealed")
    try:
        plain = ChaCha20Poly1305(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], None)
    except InvalidTag:
        raise SealError("box does not open with this key (sealed to another key, or altered on the way)") from None
    try:
        message = json.loads(plain)
    except ValueError:
        raise SealError("a sealed message must hold JSON") from None
    if not isinstance(message, dict):
        raise SealError("a sealed message must hold a JSON object")
    return message


@dataclass(frozen=True)
class Sealed:
    """One join as the machine sends it: the wire body and the key its answer opens with."""

    body: dict
    answer_key: bytes

    def open_answer(self, answer: dict) -> dict:
        """The cluster's answer; SealError if it was not made by a holder of the cluster key."""
        return _open(self.answer_key, answer.get("box") if isinstance(answer, dict) else None)


def seal_request(cluster_pub_b64: str, request: dict) -> Sealed:
    """Seal `request` (join token, machine info, ...) to the cluster's join public key."""
    cluster_pub = _unb64(cluster_pub_b64, "the join token's cluster key")
    if len(cluster_pub) != KEY_BYTES:
        raise SealError("the join token's cluster key is not an X25519 public key")
    mine = X25519PrivateKey.generate()
    machine_pub = _raw(mine.public_key())
    k_req, k_ans = _keys(mine.exchange(X25519PublicKey.from_public_bytes(cluster_pub)), machine_pub, cluster_pub)
    return Sealed({"key": _b64(machine_pub), "box": _seal(k_req, request)}, k_ans)


@dataclass(frozen=True)
class Opened:
    """A join as the cluster reads it, with the means to seal its answer."""

    request: dict
    answer_key: bytes

    def seal_answer(self, answer: dict) -> dict:
        return {"box": _seal(self.answer_key, answer)}


def open_request(cluster_key: bytes, body: dict) -> Opened:
    """The machine's request; SealError if it is not sealed to this cluster or was altered."""
    machine_pub = _unb64(body.get("key"), "key")
    if len(machine_pub) != KEY_BYTES:
        raise SealError("key must be the joining machine's X25519 public key (32 bytes)")
    private = cluster_private(cluster_key)
    cluster_pub = _raw(private.public_key())
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(machine_pub))
    except ValueError:  # a low-order point gives an all-zero secret, which cryptography refuses
        raise SealError("key is not a usable X25519 public key") from None
    k_req, k_ans = _keys(shared, machine_pub, cluster_pub)
    return Opened(_open(k_req, body.get("box")), k_ans)
