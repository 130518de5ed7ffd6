"""What a headless Chromium needs to trust a dev edge without a system-wide CA: the base64
SHA-256 of a certificate's public key, for --ignore-certificate-errors-spki-list."""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def spki_sha256(pem: str) -> str:
    cert = x509.load_pem_x509_certificate(pem.encode())
    der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def intermediate_spki(edge) -> str:
    """The SPKI hash of a dev edge's (router.edge.Edge) CA intermediate, which signs its sites."""
    edge.root_ca_pem()  # waits for the CA to exist
    status, body = edge.caddy.admin.request("GET", "/pki/ca/local")
    return spki_sha256(json.loads(body)["intermediate_certificate"])
