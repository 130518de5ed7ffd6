"""Issue 18 item 2: the edge's certificates from a real ACME CA, on the simulated internet.

Pebble (Let's Encrypt's test CA, Debian's `pebble` package) runs on the client host with
pebble-challtestsrv as its DNS server: every name resolves to the edge unless a test points
it elsewhere, as a domain owner's DNS would. Pebble validates the challenges for real, on the
edge's ports 80 (HTTP-01) and 443 (TLS-ALPN-01), and issues certificates that live
VALIDITY seconds, so a renewal happens within the module. The cluster is installed as
`vcapp dev up` installs it, with `vcapp edge setup --acme-ca URL --acme-ca-root FILE`
instead of `--dev`; the client trusts Pebble's root only, so a 200 proves the certificate
came from the CA. What is checked is what an admin and a visitor see: the page over HTTPS,
no certificate (and no order at the CA) for a name the cluster does not serve, and `vcapp
domains` saying issued / failed and why / renewed.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from cryptography import x509

from builder.baseimage import TINY_IMAGE, tiny_build_command, tiny_context
from router.edge import CERT_LOG
from vcapp.dev import platform
from vcapp.dev.rigs.acme import Pebble
from vcapp.dev.rigs.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

DOMAIN = platform.DOMAIN
APP = "shop"
CUSTOM = "www.shop-example.test"  # a custom domain; its DNS first points at the wrong host
VALIDITY = 60  # s, Pebble's certificate lifetime: Caddy renews in the last third (20 s)
SERVE = 'mkdir -p /www && echo "<h1>Hello from {app}</h1>" > /www/index.html && exec httpd -f -p 8080 -h /www'
PLACE_WAIT = 180.0  # s: placement, podman create and the first check (see test_edge_cluster)
# s: the first visit waits for the whole ACME exchange (order, challenge, finalize) in its
# TLS handshake; ~1-3 s here, generous for a loaded host.
ISSUE_WAIT = 90.0
# s: a failed on-demand issuance is tried again by Caddy (certmagic) 1 minute later, within
# the 180 s it gives a handshake's issuance.
RETRY_WAIT = 150.0
REPORT_WAIT = 30.0  # s: the edge reports a changed status at its next 1 s poll


class Acme(Pebble):
    """Pebble, and what the tests ask of the cluster through it."""

    def visit(self, host: str, timeout: float = 30):
        """GET https://HOST/ from the client through the edge, trusting Pebble's root only."""
        return self.sim.fetch(f"https://{host}/", "--cacert", str(self.root), "--resolve",
                              f"{host}:443:{self.edge}", "-w", "\n%{http_code}", timeout=timeout)

    def domains(self) -> dict[str, dict]:
        out = self.sim.run("home-1", "vcapp", "domains", "--json", timeout=60).stdout
        return {row["host"]: row for row in json.loads(out)}

    def issuance_log(self) -> str:
        """The edge's certificate log (Caddy's issuance lines), for failure messages."""
        path = platform.edge_caddy_dir(self.sim.dc) / CERT_LOG
        return "edge certificate log:\n" + ("\n".join(path.read_text().splitlines()[-15:]) if path.exists() else "none")

    def served_cert(self, host: str) -> x509.Certificate:
        out = self.sim.run("client", "openssl", "s_client", "-connect", f"{self.edge}:443", "-servername", host,
                           input="", check=False, timeout=60)
        pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out.stdout, re.S)
        assert pem, f"no certificate in the TLS handshake for {host}: {out.stderr[-500:]}"
        return x509.load_pem_x509_certificate(pem.group(0).encode())


@pytest.fixture(scope="module")
def acme(make_sim, tmp_path_factory):
    sim = make_sim(home=1, office=0)
    ctx = tiny_context(tmp_path_factory.mktemp("tiny"))
    sim.run("home-1", *tiny_build_command(ctx), timeout=300)
    a = Acme(sim, tmp_path_factory.mktemp("pebble"), validity=VALIDITY)
    platform.install(sim.dc, say=lambda line: None, acme=platform.Acme(a.directory, Path(a.listen_cert)))
    sim.run("home-1", "vcapp", "apps", "create", APP, "--image", TINY_IMAGE, "--port", "8080", "--command",
            SERVE.format(app=APP), "--health-path", "/", "--memory", "64M", timeout=60)
    return a


def test_an_app_gets_its_certificate_from_the_ca_at_its_first_visit(acme):
    host = f"{APP}.{DOMAIN}"
    row = wait_for(lambda: (r := acme.domains().get(host)) and r["state"] != "unknown" and r, REPORT_WAIT,
                   f"the edge reporting {host}")
    assert row["state"] == "waiting", row  # certificates come on demand: none before a visit
    out = wait_for(lambda: (o := acme.visit(host)).stdout.endswith("\n200") and o, PLACE_WAIT + ISSUE_WAIT,
                   f"https://{host}/ answering through the edge with a certificate Pebble issued")
    assert f"Hello from {APP}" in out.stdout
    row = wait_for(lambda: (r := acme.domains()[host])["state"] == "issued" and r, REPORT_WAIT,
                   f"`vcapp domains` showing {host} issued")
    assert time.time() < row["not_after"] <= time.time() + VALIDITY + 5, row
    issuer = acme.served_cert(host).issuer.rfc4514_string()
    assert "Pebble" in issuer, issuer


def test_a_name_the_cluster_does_not_serve_gets_no_certificate(acme):
    for host in (f"nosuch.{DOMAIN}", "www.not-ours.test"):
        out = acme.visit(host, timeout=15)
        assert out.returncode != 0 and not out.stdout.endswith("\n200"), (host, out.stdout, out.stderr)
        assert "SSL" in out.stderr or "TLS" in out.stderr, out.stderr  # refused in the handshake
        assert host not in acme.domains()
    storage = platform.edge_caddy_dir(acme.sim.dc)
    held = sorted(p.name for p in storage.rglob("*.crt"))
    assert not [n for n in held if "nosuch" in n or "not-ours" in n], held


def test_a_failed_challenge_shows_why_and_the_name_is_issued_once_dns_is_right(acme):
    acme.point(CUSTOM, acme.addr)  # the owner's DNS points at a host that serves nothing
    acme.sim.run("home-1", "vcapp", "domains", "add", APP, CUSTOM, timeout=60)
    wait_for(lambda: acme.domains().get(CUSTOM, {}).get("state") == "waiting", REPORT_WAIT,
             f"{CUSTOM} among the served names")
    out = acme.visit(CUSTOM, timeout=20)
    assert not out.stdout.endswith("\n200"), out.stdout
    row = wait_for(lambda: (r := acme.domains()[CUSTOM])["state"] == "failed" and r, ISSUE_WAIT,
                   f"`vcapp domains` showing {CUSTOM} failed")
    assert acme.addr in row["reason"] or "refused" in row["reason"].lower(), row  # why, from the CA
    human = acme.sim.run("home-1", "vcapp", "domains", timeout=60).stdout
    assert CUSTOM in human and "failed" in human, human

    acme.point(CUSTOM, acme.edge)  # DNS fixed: Caddy's next try succeeds
    out = wait_for(lambda: (o := acme.visit(CUSTOM, timeout=20)).stdout.endswith("\n200") and o, RETRY_WAIT,
                   f"https://{CUSTOM}/ once its DNS points at the edge", detail=acme.issuance_log)
    assert f"Hello from {APP}" in out.stdout
    wait_for(lambda: acme.domains()[CUSTOM]["state"] == "issued", REPORT_WAIT, f"{CUSTOM} shown issued")


def test_a_short_lived_certificate_is_renewed_before_it_expires_even_with_port_80_shut(acme):
    """Renewal with the edge's port 80 closed (an ISP that blocks it): HTTP-01 fails, and
    Caddy's ACME client proves the name with TLS-ALPN-01 on port 443 instead."""
    host = f"{APP}.{DOMAIN}"
    wait_for(lambda: acme.visit(host).stdout.endswith("\n200"), PLACE_WAIT + ISSUE_WAIT, f"https://{host}/ answering")
    first = acme.served_cert(host)
    shut = ["iptables", "-w", "-I", "INPUT", "-p", "tcp", "--dport", "80", "-j", "REJECT",
            "--reject-with", "tcp-reset"]
    acme.sim.run("edge", *shut)
    try:
        assert acme.sim.fetch(f"http://{acme.edge}/", timeout=5).returncode != 0  # port 80 is shut
        renew_from = first.not_valid_after_utc.timestamp() - VALIDITY / 3
        time.sleep(max(0.0, renew_from - time.time()) + 1)

        def renewed():
            assert acme.visit(host).stdout.endswith("\n200")  # visits go on being served throughout
            cert = acme.served_cert(host)  # (two certificates of one expiry can alternate: not a renewal)
            return cert.not_valid_after_utc > first.not_valid_after_utc and cert

        second = wait_for(renewed, VALIDITY, f"a renewed certificate for {host}", interval=2,
                          detail=acme.issuance_log)
    finally:
        acme.sim.run("edge", *[("-D" if a == "-I" else a) for a in shut])
    # A 60 s certificate is due again 40 s after it is issued: a next renewal may be under way
    # ("issued", reason "renewing") when this looks; what must not stay is a failure's reason.
    wait_for(lambda: (r := acme.domains()[host])["not_after"] >= second.not_valid_after_utc.timestamp() - 1
             and r["state"] == "issued" and r["reason"] == "" and r, REPORT_WAIT,
             "`vcapp domains` showing the renewed certificate's expiry, issued, no failure")
