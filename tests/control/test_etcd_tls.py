"""etcd with the cluster's TLS (vcapp/etcdtls.py, vcapp/node/etcd.py): a real etcd on loopback
started with the flags the node daemon gives it, and clients with and without certificates."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.api.conftest import free_port
from vcapp import etcdtls
from vcapp.node import etcd
from vcapp.state.store import Store, StoreUnavailable, wait_healthy

CLUSTER_KEY = bytes(range(32))
START_TIMEOUT = 20
PUT = {"key": "L3ZjL3Rva2Vucy9hZG1pbi9mb3JnZWQ=", "value": "e30="}  # /vc/tokens/admin/forged = {}


def machine_certs(base, cluster_key: bytes, name: str, addr: str, ca_pem: bytes | None = None) -> etcdtls.Paths:
    """What `cluster init` writes on a machine: CA certificate, its key and certificate, empty CRL."""
    ca_pem = ca_pem or etcdtls.make_ca(cluster_key, "acme")
    key = etcdtls.new_key()
    p = etcdtls.save_machine(base, ca_pem, etcdtls.sign(ca_pem, cluster_key, key.public_key(), name, addr), key)
    etcdtls.write_crl(base, cluster_key, [])
    return p


@contextlib.contextmanager
def tls_etcd_process(tmp_path, *extra: str) -> Iterator[tuple[str, etcdtls.Paths, Path]]:
    """A real etcd member m1 on 127.0.0.1 with the node daemon's TLS flags (plus `extra`),
    serving clients and peers with TLS only; yields (url, m1's paths, m1's base dir)."""
    base = tmp_path / "m1"
    tls = machine_certs(base, CLUSTER_KEY, "m1", "127.0.0.1")
    client, peer = free_port(), free_port()
    url, peer_url = f"https://127.0.0.1:{client}", f"https://127.0.0.1:{peer}"
    log = open(tmp_path / "etcd.log", "w")
    proc = subprocess.Popen(
        [etcd.ETCD_BIN, "--name", "m1", "--data-dir", str(tmp_path / "data"),
         "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
         "--initial-cluster", f"m1={peer_url}", *etcd.tls_flags(tls), *extra],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        yield url, tls, base
    finally:
        proc.kill()
        proc.wait(10)
        log.close()


@pytest.fixture
def tls_etcd(tmp_path):
    """etcd with TLS and without auth; yields (url, paths, base)."""
    with tls_etcd_process(tmp_path) as (url, tls, base):
        wait_healthy(Store([url], tls=tls), START_TIMEOUT)
        yield url, tls, base


def refused(url: str, **kw) -> str:
    """Why a put without the right certificate fails (requests raises on the handshake)."""
    try:
        resp = requests.post(f"{url}/v3/kv/put", json=PUT, timeout=5, **kw)
    except requests.exceptions.RequestException as e:
        return type(e).__name__
    raise AssertionError(f"etcd answered {resp.status_code} to a client it must refuse: {resp.text[:200]}")


def test_the_machines_certificate_works(tls_etcd):
    url, tls, _ = tls_etcd
    store = Store([url], tls=tls)
    store.put("/probe", {"ok": 1})
    assert store.value("/probe") == {"ok": 1}


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # verify=False on purpose
def test_a_client_without_a_certificate_is_refused_and_writes_nothing(tls_etcd):
    url, tls, _ = tls_etcd
    before = Store([url], tls=tls).revision()
    assert refused(url, verify=str(tls.ca)) == "SSLError"  # TLS, but no client certificate
    assert refused(url, verify=False) == "SSLError"
    assert refused(url.replace("https://", "http://")) in ("ConnectionError", "SSLError")  # no plain HTTP
    curl = subprocess.run(["curl", "-sS", "--max-time", "5", "--cacert", str(tls.ca), "-X", "POST",
                           "-d", '{"key":"L3g=","value":"eA=="}', f"{url}/v3/kv/put"], capture_output=True, text=True)
    assert curl.returncode != 0 and not curl.stdout, curl  # the handshake fails: no answer at all
    assert Store([url], tls=tls).revision() == before
    assert Store([url], tls=tls).get("/vc/tokens/admin/forged") is None


def test_a_certificate_from_another_ca_is_refused(tls_etcd, tmp_path):
    url, tls, _ = tls_etcd
    other = machine_certs(tmp_path / "other", bytes(32), "m1", "127.0.0.1")  # same names, another CA
    assert refused(url, verify=str(tls.ca), cert=(str(other.cert), str(other.key))) == "SSLError"
    with pytest.raises(StoreUnavailable):
        Store([url], tls=etcdtls.Paths(tls.ca, other.cert, other.key, other.crl)).revision()


def test_a_revoked_certificate_is_refused_at_its_next_connection_without_a_restart(tls_etcd, tmp_path):
    url, tls, base = tls_etcd
    ca_pem = tls.ca.read_bytes()
    removed = machine_certs(tmp_path / "m2", CLUSTER_KEY, "m2", "127.0.0.1", ca_pem)
    as_m2 = etcdtls.Paths(tls.ca, removed.cert, removed.key, removed.crl)
    Store([url], tls=as_m2).put("/probe/m2", "still a member")
    etcdtls.write_crl(base, CLUSTER_KEY, [etcdtls.serial(removed.cert.read_bytes())])
    deadline = time.monotonic() + 5
    with pytest.raises(StoreUnavailable):
        while time.monotonic() < deadline:  # etcd reads the list at each handshake
            Store([url], tls=as_m2).revision()
            time.sleep(0.2)
    Store([url], tls=tls).put("/probe/m1", "unaffected")


def test_a_csr_is_checked_before_anything_is_signed():
    key = etcdtls.new_key()
    assert etcdtls.check_csr(etcdtls.make_csr(key, "m2")).public_key().public_numbers() == key.public_key().public_numbers()
    for bad, why in [(None, "give the certificate signing request"), ("hello", "not a PEM"),
                     ("x" * 5000, "at most 4096 bytes")]:
        with pytest.raises(etcdtls.TLSError, match=why):
            etcdtls.check_csr(bad)


def test_a_ca_certificate_of_another_cluster_key_signs_nothing():
    ca_pem = etcdtls.make_ca(bytes(32), "other")
    with pytest.raises(etcdtls.TLSError, match="does not belong to this cluster key"):
        etcdtls.sign(ca_pem, CLUSTER_KEY, etcdtls.new_key().public_key(), "m2", "10.0.0.2")
