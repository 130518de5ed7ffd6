"""The cluster's etcd PKI: a CA, one certificate per machine, and a revocation list.

etcd serves clients and peers over TLS only and admits a connection only with a certificate
signed by the cluster CA (client and peer certificate auth). Who holds what:

    CA key          derived from the cluster key (HMAC "etcd-ca" -> P-256 scalar), never
                    stored on its own: every machine that has the cluster key (on its disk,
                    0600) can sign, nothing else can, and it never crosses the wire
    CA certificate  made at `cluster init`, public: in etcd (keys.ETCD_CA) and on every
                    machine's disk
    machine key     made on the machine at `cluster init` / `node join`, never leaves it (0600)
    machine cert    O=vcapp, OU=machine name, no CN (machine_subject says why), IP SANs = its
                    cluster address and 127.0.0.1, server and
                    client use (etcd's listeners, its peers, and every etcd client of the
                    machine); signed at init for the first machine, from the CSR its join
                    request carries for the others
    CRL             every removed machine's serial (keys.ETCD_REVOKED), written by each machine
                    for its etcd (--client-crl-file, --peer-crl-file: etcd reads the file at each
                    handshake, so a new list takes effect without a restart)

    <data dir>/keys/etcd/ca.crt  machine.crt  machine.key  revoked.crl  machine.auth (etcdauth.py)
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CURVE = ec.SECP256R1()
# Nothing renews certificates yet: a machine keeps its certificate while it belongs to the
# cluster, and loses etcd access through the revocation list when it is removed.
CA_VALIDITY = datetime.timedelta(days=365 * 30)
MACHINE_VALIDITY = datetime.timedelta(days=365 * 20)
CRL_VALIDITY = datetime.timedelta(days=365 * 20)  # etcd does not check nextUpdate; it is required
CLOCK_SKEW = datetime.timedelta(hours=1)  # a machine whose clock is a little behind accepts a new cert
MAX_CSR_BYTES = 4096  # a P-256 CSR is under 1 KB


class TLSError(ValueError):
    """A CSR, certificate or key that cannot be used, with the reason."""


@dataclass(frozen=True)
class Paths:
    ca: Path
    cert: Path
    key: Path
    crl: Path
    auth: Path | None = None  # the machine's etcd login (vcapp/state/etcdauth.py)

    def complete(self) -> bool:
        return self.ca.exists() and self.cert.exists() and self.key.exists()

    def etcdctl_flags(self) -> list[str]:
        """etcdctl's flags for this machine's certificate, and its etcd login when it has one
        (on the command line: for tests and benches, not for the node daemon)."""
        flags = ["--cacert", str(self.ca), "--cert", str(self.cert), "--key", str(self.key)]
        if self.auth is not None and self.auth.exists():
            login = json.loads(self.auth.read_text())
            flags += ["--user", login["user"], "--password", login["password"]]
        return flags


def paths(base: Path) -> Paths:
    d = Path(base) / "keys" / "etcd"
    return Paths(d / "ca.crt", d / "machine.crt", d / "machine.key", d / "revoked.crl", d / "machine.auth")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


# ---- the CA --------------------------------------------------------------------------------

def ca_key(cluster_key: bytes) -> ec.EllipticCurvePrivateKey:
    """The CA's private key, the same on every machine holding the cluster key."""
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # of P-256
    seed = hmac.new(cluster_key, b"etcd-ca", hashlib.sha512).digest()
    return ec.derive_private_key(int.from_bytes(seed, "big") % (order - 1) + 1, CURVE)


def make_ca(cluster_key: bytes, cluster: str) -> bytes:
    """A self-signed CA certificate (PEM) for the key derived from `cluster_key`."""
    key = ca_key(cluster_key)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"vcapp {cluster} etcd CA")])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def check_ca(ca_pem: bytes, cluster_key: bytes) -> None:
    """TLSError unless `ca_pem` is the CA of `cluster_key` (checked before a join is admitted)."""
    _load_ca(ca_pem, cluster_key)


def _load_ca(ca_pem: bytes, cluster_key: bytes) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA certificate and its key; refused if the certificate is not the cluster key's CA
    (a CA certificate swapped in etcd cannot make this machine sign for another key)."""
    cert = x509.load_pem_x509_certificate(ca_pem)
    key = ca_key(cluster_key)
    if cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
            key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise TLSError("the cluster's etcd CA certificate does not belong to this cluster key")
    return cert, key


# ---- machine keys and certificates -------------------------------------------------------

def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(CURVE)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_csr(key: ec.EllipticCurvePrivateKey, name: str) -> str:
    """A CSR (PEM text) for this machine's key; the signer decides names and addresses."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def check_csr(csr_pem: object) -> x509.CertificateSigningRequest:
    """A parsed CSR with a valid self-signature over a P-256 key, else TLSError saying why."""
    if not isinstance(csr_pem, str) or not csr_pem.strip():
        raise TLSError("csr: give the certificate signing request of this machine's etcd key (PEM)")
    if len(csr_pem) > MAX_CSR_BYTES:
        raise TLSError(f"csr: at most {MAX_CSR_BYTES} bytes")
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        valid = csr.is_signature_valid
    except (ValueError, TypeError, InvalidSignature):
        raise TLSError("csr: not a PEM certificate signing request") from None
    if not valid:
        raise TLSError("csr: its signature does not match its key")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != CURVE.name:
        raise TLSError("csr: the key must be ECDSA P-256")
    return csr


def machine_subject(name: str) -> x509.Name:
    """O=vcapp, OU=<machine name>, and no Common Name: with etcd auth on, etcd's JSON gateway
    refuses (HTTP 400) every request whose client certificate has a CN, because it cannot pass
    a CN on as the user (etcd PRs #10366, #10392); and over gRPC a CN would log in as the
    etcd user of that name without a password. Without one, the certificate only says "a
    cluster machine" and the etcd user says which (vcapp/state/etcdauth.py)."""
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vcapp"),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, name)])


def sign(ca_pem: bytes, cluster_key: bytes, public_key: ec.EllipticCurvePublicKey, name: str, addr: str) -> bytes:
    """The machine certificate (PEM) for `public_key`: OU `name`, IP SANs `addr` and 127.0.0.1."""
    ca, key = _load_ca(ca_pem, cluster_key)
    ips = sorted({ipaddress.ip_address(addr), ipaddress.ip_address("127.0.0.1")}, key=str)
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(machine_subject(name))
            .issuer_name(ca.subject).public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + MACHINE_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip) for ip in ips]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def serial(cert_pem: bytes) -> str:
    """The certificate's serial number in hex (how the revocation list names it)."""
    return format(x509.load_pem_x509_certificate(cert_pem).serial_number, "x")


def make_crl(ca_pem: bytes, cluster_key: bytes, serials: list[str]) -> bytes:
    """The revocation list (PEM) of the given serials (hex), signed by the CA."""
    ca, key = _load_ca(ca_pem, cluster_key)
    now = _now()
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
               .last_update(now - CLOCK_SKEW).next_update(now + CRL_VALIDITY))
    for s in sorted(set(serials)):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(int(s, 16)).revocation_date(now).build())
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


# ---- files on this machine -------------------------------------------------------------------

def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` atomically, created with `mode` (keys 0600: root only, like the cluster key)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def save_machine(base: Path, ca_pem: bytes, cert_pem: bytes, key: ec.EllipticCurvePrivateKey) -> Paths:
    """Write this machine's CA certificate, certificate and key."""
    p = paths(base)
    _write(p.key, key_pem(key), 0o600)
    _write(p.cert, cert_pem, 0o644)
    _write(p.ca, ca_pem, 0o644)
    return p


def write_crl(base: Path, cluster_key: bytes, serials: list[str]) -> None:
    p = paths(base)
    _write(p.crl, make_crl(p.ca.read_bytes(), cluster_key, serials), 0o644)


def forget(base: Path) -> None:
    p = paths(base)
    for f in (p.ca, p.cert, p.key, p.crl, p.auth):
        f.unlink(missing_ok=True)
