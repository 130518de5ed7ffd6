"""Let's Encrypt's part on the simulated internet: Pebble (its test ACME CA, Debian's `pebble`
package) and pebble-challtestsrv as the DNS Pebble validates names with, on the client host.

    ca = Pebble(sim, workdir, validity=60)   # running; every name resolves to the edge
    ca.directory, ca.listen_cert             # for `vcapp edge setup --acme-ca ... --acme-ca-root ...`
    ca.root                                  # the root its certificates chain to (clients trust it)
    ca.point("www.example.org", addr)        # the domain owner's DNS record

Validation is real: HTTP-01 on the edge's port 80, TLS-ALPN-01 on 443. Pebble sleeps no
random time before validating, refuses no nonce on purpose, and reuses no authorization
(every order is validated afresh, renewals included).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vcapp.dev.rigs.waiting import wait_for

DIRECTORY_PORT, MANAGEMENT_PORT, DNS_PORT, DNS_MANAGEMENT_PORT = 14000, 15000, 8053, 8055
START_WAIT = 30.0  # s: Pebble answers within a second


def self_signed(work: Path, ip: str) -> tuple[Path, Path]:
    """A certificate for `ip` and its key: Pebble's own HTTPS."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble on the simulated internet")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = work / "pebble.crt", work / "pebble.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Pebble:
    def __init__(self, sim, work: Path, validity: int | None = None, host: str = "client"):
        """validity: its certificates' lifetime in seconds (None: Pebble's default, years)."""
        self.sim, self.work, self.host = sim, work, host
        self.addr, self.edge = sim.addr(host), sim.addr("edge")
        self.listen_cert, key = self_signed(work, self.addr)
        settings = {"listenAddress": f"{self.addr}:{DIRECTORY_PORT}",
                    "managementListenAddress": f"{self.addr}:{MANAGEMENT_PORT}",
                    "certificate": str(self.listen_cert), "privateKey": str(key), "httpPort": 80, "tlsPort": 443,
                    "ocspResponderURL": "", "externalAccountBindingRequired": False}
        if validity is not None:
            settings["certificateValidityPeriod"] = validity
        config = work / "pebble.json"
        config.write_text(json.dumps({"pebble": settings}))
        sim.spawn(host, "pebble-challtestsrv", "-defaultIPv4", self.edge, "-defaultIPv6", "",
                  "-dns01", f"{self.addr}:{DNS_PORT}", "-http01", "", "-https01", "", "-tlsalpn01", "",
                  "-management", f"{self.addr}:{DNS_MANAGEMENT_PORT}", log=work / "challtestsrv.log")
        sim.spawn(host, "env", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0",
                  "pebble", "-config", str(config), "-dnsserver", f"{self.addr}:{DNS_PORT}", log=work / "pebble.log")
        self.directory = f"https://{self.addr}:{DIRECTORY_PORT}/dir"
        wait_for(lambda: self.get(self.directory).returncode == 0, START_WAIT, "Pebble's ACME directory answering")
        self.root = work / "pebble-root.pem"
        self.root.write_text(self.get(f"https://{self.addr}:{MANAGEMENT_PORT}/roots/0").stdout)

    def get(self, url: str):
        return self.sim.fetch(url, "--cacert", str(self.listen_cert), host=self.host)

    def point(self, name: str, addr: str) -> None:
        """The domain owner's DNS: `name` resolves to `addr` (for Pebble's validations)."""
        for verb, body in (("clear-a", {"host": name + "."}), ("add-a", {"host": name + ".", "addresses": [addr]})):
            out = self.sim.fetch(f"http://{self.addr}:{DNS_MANAGEMENT_PORT}/{verb}", "-d", json.dumps(body),
                                 host=self.host)
            assert out.returncode == 0, out.stderr
