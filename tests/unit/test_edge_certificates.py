"""Each served name's certificate status at the edge (vcapp/edge/certificates.py), its report
as the API keeps it (vcapp/state/certificates.py), and the permission endpoint Caddy asks
before an on-demand issuance (vcapp/edge/permission.py). The log lines are certmagic's own
(config.go, handshake.go); the cluster test with Pebble is tests/ingress/test_acme_cluster.py."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from vcapp.edge import certificates as c
from vcapp.edge.permission import PermissionServer
from vcapp.errors import BadRequest
from vcapp.state import certificates as records
from vcapp.state import keys


def line(msg: str, ts: float, level: str = "info", logger: str = "tls.obtain", **fields) -> str:
    return json.dumps({"level": level, "ts": ts, "logger": logger, "msg": msg, **fields})


def test_caddys_issuance_lines_become_attempts_and_other_lines_nothing():
    assert c.parse_line(line("obtaining certificate", 10.0, identifier="Shop.Apps.Test")) == \
        c.Attempt("shop.apps.test", "started", 10.0)
    assert c.parse_line(line("obtaining new certificate", 10.0, logger="tls.on_demand",
                             server_name="shop.apps.test")).outcome == "started"
    assert c.parse_line(line("certificate renewed successfully", 11.0, logger="tls.renew",
                             identifier="shop.apps.test")).outcome == "obtained"
    failed = c.parse_line(line("could not get certificate from issuer", 12.0, level="error",
                               identifier="www.example.org", error="HTTP 403 urn:ietf:params:acme:error:"
                               "connection - 10.0.0.9: Connection refused" + "x" * 2000))
    assert failed.outcome == "failed" and "Connection refused" in failed.error and len(failed.error) == 400
    assert c.parse_line(line("acquiring lock", 10.0, identifier="shop.apps.test")) is None
    assert c.parse_line(line("will retry", 10.0, level="error", error="boom")) is None  # names no name
    assert c.parse_line(line("obtaining certificate", 10.0, logger="http.log", identifier="x.test")) is None
    assert c.parse_line("not json") is None and c.parse_line("[1]") is None


def test_each_names_status_from_storage_attempts_and_visits():
    now = 1000.0
    issued = {"a.test": c.Issued(not_after=2000.0, saved_at=900.0), "old.test": c.Issued(900.0, 100.0),
              "renewing.test": c.Issued(1500.0, 500.0)}
    last = {"b.test": c.Attempt("b.test", "failed", 950.0, "DNS problem"),
            "c.test": c.Attempt("c.test", "started", 990.0),
            "renewing.test": c.Attempt("renewing.test", "failed", 600.0, "rate limited"),
            "a.test": c.Attempt("a.test", "obtained", 899.0)}
    got = c.decide(["a.test", "b.test", "c.test", "d.test", "e.test", "old.test", "renewing.test"], issued, last,
                   {"d.test": 980.0}, now)
    assert got["a.test"] == c.CertStatus("issued", "", 2000.0, 900.0)
    assert got["b.test"] == c.CertStatus("failed", "DNS problem", None, 950.0)
    assert got["c.test"].state == got["d.test"].state == "pending" and got["d.test"].since == 980.0
    assert got["e.test"].state == "waiting"
    assert got["old.test"].state == "expired"
    assert got["renewing.test"].state == "issued" and got["renewing.test"].reason == "renewal failed: rate limited"


def test_certificates_in_caddys_storage_are_found_by_name_or_wildcard(tmp_path):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def write(issuer: str, key_name: str, days: int) -> float:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=days))
                .sign(key, hashes.SHA256()))
        d = tmp_path / "certificates" / issuer / key_name
        d.mkdir(parents=True)
        (d / f"{key_name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert.not_valid_after_utc.timestamp()

    a = write("acme-v02.api.letsencrypt.org-directory", "a.example.org", 90)
    newer = write("other-ca", "a.example.org", 120)
    wild = write("local", "wildcard_.apps.test", 7)
    (tmp_path / "certificates" / "x" / "bad.test").mkdir(parents=True)
    (tmp_path / "certificates" / "x" / "bad.test" / "bad.test.crt").write_text("half a file")
    got = c.issued_certificates(tmp_path, ["a.example.org", "shop.apps.test", "bad.test", "none.test"])
    assert got["a.example.org"].not_after == newer > a
    assert got["shop.apps.test"].not_after == wild
    assert set(got) == {"a.example.org", "shop.apps.test"}


def test_the_log_reader_returns_whole_new_lines_and_follows_a_roll(tmp_path):
    path = tmp_path / "certificates.log"
    reader = c.LogReader(path)
    assert reader.new_lines() == []
    path.write_text("one\ntw")
    assert reader.new_lines() == ["one"]
    with open(path, "a") as f:
        f.write("o\nthree\n")
    assert reader.new_lines() == ["two", "three"]
    path.rename(tmp_path / "certificates-old.log")
    path.write_text("four\n")  # Caddy rolled the file: a new inode
    assert reader.new_lines() == ["four"]


class FakeStore:
    def __init__(self):
        self.data = {}

    def put(self, key, value):
        self.data[key] = value

    def value(self, key):
        return self.data.get(key)


def test_the_api_keeps_the_served_names_of_a_report_and_refuses_a_malformed_one():
    store = FakeStore()
    kept = records.record(store, {"certificates": {
        "shop.apps.test": {"state": "failed", "reason": "bad\x1b[31m\nthing", "not_after": None, "since": 5},
        "evil.test": {"state": "issued"}}}, served={"shop.apps.test"})
    assert kept == {"shop.apps.test": {"state": "failed", "reason": "bad [31m thing", "not_after": None,
                                       "since": 5.0}}
    assert records.read(store)[0] == kept and store.data[keys.EDGE_CERTIFICATES]["at"] > 0
    for bad in ({}, {"certificates": []}, {"certificates": {"shop.apps.test": {"state": "great"}}},
                {"certificates": {"shop.apps.test": {"state": "issued", "not_after": "soon"}}},
                {"certificates": {"shop.apps.test": {"state": "issued", "reason": 5}}},
                {"certificates": {f"n{i}.test": {} for i in range(records.MAX_NAMES + 1)}}):
        with pytest.raises(BadRequest):
            records.record(store, bad, served={"shop.apps.test"})
    assert records.read(store)[0] == kept  # a refused report changes nothing


def test_the_permission_endpoint_allows_served_names_only():
    served = {"shop.apps.test"}
    server = PermissionServer(lambda name: name in served)
    server.start()
    try:
        def ask(name: str) -> int:
            try:
                return urllib.request.urlopen(f"{server.url}?domain={name}", timeout=5).status
            except urllib.error.HTTPError as e:
                return e.code
        assert server.url.startswith("http://127.0.0.1:")
        assert ask("Shop.Apps.Test.") == 200
        assert ask("evil.test") == 403 and ask("") == 403 and ask("a" * 300) == 403
        assert set(server.first_asks()) == {"shop.apps.test"}
    finally:
        server.stop()
