"""Each served name's certificate as this edge sees it, for the cluster's `vcapp domains`:
issued (until when), pending, failed (and why), expired, or waiting for a first visit.

Three inputs, read on every poll of the edge daemon:
- the certificates in Caddy's storage (<storage>/certificates/<issuer>/<name>/<name>.crt):
  what is issued, until when, and when it was saved (a renewal replaces the file);
- Caddy's issuance lines (router/edge_config.CERT_LOGGERS, JSON in router/edge.CERT_LOG):
  an attempt started, succeeded, or failed with the CA's error;
- the names the permission endpoint allowed (vcapp/edge/permission.py): a visit asked for them.
`decide` is pure: those inputs -> {name: CertStatus}.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509

from router.edge_config import CERT_LOGGERS
from vcapp.state.certificates import MAX_REASON

# certmagic's messages (config.go, handshake.go) for an attempt that starts and one that
# succeeds; a failure is any error line that names the name and carries the CA's error.
STARTED = frozenset({"obtaining certificate", "obtaining new certificate", "renewing certificate"})
OBTAINED = frozenset({"certificate obtained successfully", "certificate renewed successfully"})
READ_AT_MOST = 1 << 20  # bytes of new log read per poll; the rest waits for the next one


@dataclass(frozen=True)
class Attempt:
    name: str
    outcome: str  # "started" | "failed" | "obtained"
    at: float
    error: str = ""


@dataclass(frozen=True)
class Issued:
    not_after: float
    saved_at: float  # when Caddy wrote the file: an attempt after it is a renewal


@dataclass(frozen=True)
class CertStatus:
    state: str  # one of vcapp/state/certificates.STATES
    reason: str = ""
    not_after: float | None = None
    since: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def parse_line(text: str) -> Attempt | None:
    """One JSON line of Caddy's certificate log -> the attempt it tells of, or None."""
    try:
        rec = json.loads(text)
    except ValueError:
        return None
    if not isinstance(rec, dict) or rec.get("logger") not in CERT_LOGGERS:
        return None
    name = rec.get("identifier") or rec.get("server_name")
    at = rec.get("ts")
    if not isinstance(name, str) or not isinstance(at, (int, float)):
        return None
    msg = rec.get("msg")
    if rec.get("level") == "error" and rec.get("error"):
        return Attempt(name.lower(), "failed", float(at), str(rec["error"])[:MAX_REASON])
    if msg in OBTAINED:
        return Attempt(name.lower(), "obtained", float(at))
    if msg in STARTED:
        return Attempt(name.lower(), "started", float(at))
    return None


def decide(names: list[str], issued: dict[str, Issued], last: dict[str, Attempt], asked: dict[str, float],
           now: float) -> dict[str, CertStatus]:
    """Each name's status from what storage holds, the newest attempt, and the first visits."""
    out = {}
    for name in names:
        cert, att = issued.get(name), last.get(name)
        if cert is not None and cert.not_after > now:
            reason = ""
            if att is not None and att.at > cert.saved_at:
                reason = {"failed": f"renewal failed: {att.error}", "started": "renewing"}.get(att.outcome, "")
            out[name] = CertStatus("issued", reason, cert.not_after, cert.saved_at)
        elif att is not None and att.outcome == "failed":
            out[name] = CertStatus("failed", att.error, None, att.at)
        elif cert is not None:
            out[name] = CertStatus("expired", "the certificate expired and no renewal succeeded yet",
                                   cert.not_after, cert.not_after)
        elif att is not None or name in asked:
            out[name] = CertStatus("pending", "asking the CA", None, att.at if att else asked[name])
        else:
            out[name] = CertStatus("waiting", "no HTTPS visit yet: the certificate comes with the first one")
    return out


def latest(attempts: list[Attempt], into: dict[str, Attempt]) -> dict[str, Attempt]:
    """Keep the newest attempt per name ("obtained" ends the story of the ones before it)."""
    for a in attempts:
        if a.name not in into or a.at >= into[a.name].at:
            into[a.name] = a
    return into


def storage_key(name: str) -> str:
    """certmagic's file name for a subject ("*.example.org" -> "wildcard_.example.org")."""
    return name.replace("*", "wildcard_")


def issued_certificates(storage_dir: Path, names: list[str]) -> dict[str, Issued]:
    """The certificates Caddy holds for `names` (any issuer; a name under a held wildcard
    counts as issued by it), the latest-expiring one per name."""
    out: dict[str, Issued] = {}
    base = storage_dir / "certificates"
    for name in names:
        keys = [storage_key(name)]
        if "." in name:
            keys.append(storage_key("*." + name.split(".", 1)[1]))
        for key in keys:
            for crt in base.glob(f"*/{key}/{key}.crt"):
                found = _read(crt)
                if found and (name not in out or found.not_after > out[name].not_after):
                    out[name] = found
    return out


def _read(path: Path) -> Issued | None:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        return Issued(cert.not_valid_after_utc.timestamp(), path.stat().st_mtime)
    except (OSError, ValueError):
        return None  # being replaced right now: the next poll reads it


class LogReader:
    """Reads the lines added to a log file since the last call, across Caddy's rolls."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.inode: int | None = None
        self.partial = b""

    def new_lines(self) -> list[str]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []
        if st.st_ino != self.inode or st.st_size < self.offset:  # rolled: a new file
            self.inode, self.offset, self.partial = st.st_ino, 0, b""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(READ_AT_MOST)
        self.offset += len(data)
        data = self.partial + data
        *lines, self.partial = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines if line.strip()]
