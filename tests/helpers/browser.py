"""What a headless Chromium needs to trust a dev edge without a system-wide CA: the base64
SHA-256 of a certificate's public key, for --ignore-certificate-errors-spki-list."""

from __future__ import annotations

import base64
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def spki_sha256(pem: str) -> str:
    cert = x509.load_pem_x509_certificate(pem.encode())
    der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def intermediate_spki(edge) -> str:
    """The SPKI hash of a dev edge's (router.edge.Edge) CA intermediate, which signs its sites."""
    return spki_sha256(edge.dev_ca()["intermediate_certificate"])


def screenshot(sim, host: str, url: str, shot, profile, resolve: str, spki: str, timeout: float) -> bytes:
    """Headless Chromium on simulated `host` loads `url` (names mapped by `resolve`, a
    --host-resolver-rules MAP rule; sites signed under the certificate of SPKI hash `spki`
    trusted) and saves a 900x600 screenshot to `shot`; returns its bytes. A page Chromium could
    not load leaves no file: the failure says Chromium's reason (net::ERR_...)."""
    shot.unlink(missing_ok=True)
    proc = sim.run(host, "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                   "--window-size=900,600", f"--host-resolver-rules={resolve}",
                   f"--ignore-certificate-errors-spki-list={spki}", f"--screenshot={shot}", url, timeout=timeout)
    if not shot.exists():
        reasons = [line for line in proc.stderr.splitlines() if "ERR_" in line or "failed" in line.lower()]
        raise AssertionError(f"chromium saved no screenshot of {url}: {' '.join(reasons) or proc.stderr[-2000:]}")
    return shot.read_bytes()
