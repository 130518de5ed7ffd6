"""A SeaweedFS filer keeps its metadata in an etcd that admits only cluster certificates and
logged-in users: the filer.toml the plan renders (storage/plan.py) gives it the machine's
certificate and etcd login (0600), and a file written through the filer lands in etcd under
/vc/seaweedfs/. A real `weed server` (master, volume, filer) and a real TLS etcd with auth
on, both on 127.0.0.1 with ports of their own."""

from __future__ import annotations

import base64
import socket
import subprocess
import time

import pytest
import requests

from storage.host import weed_binary
from storage.plan import EtcdLogin, EtcdTLS, filer_toml
from tests.api.conftest import free_port
from tests.control.test_etcd_auth import auth_etcd_process
from vcapp.state import etcdauth, keys
from vcapp.state.store import Store, prefix_end

START_TIMEOUT = 60.0  # weed server: master election, volume registration, filer store check
GRPC_OFFSET = 10000  # SeaweedFS serves gRPC on its HTTP port + 10000


def port_pair() -> int:
    """A free port whose +10000 (gRPC) is free too."""
    while True:
        port = free_port()
        if port + GRPC_OFFSET >= 65536:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + GRPC_OFFSET))
            except OSError:
                continue
        return port


@pytest.fixture
def cluster_etcd(tmp_path):
    """etcd as a cluster's machines run it: TLS, auth, the node daemon's token lifetime."""
    with auth_etcd_process(tmp_path) as found:
        yield found


def test_a_filer_keeps_its_metadata_in_the_etcd_with_tls_and_auth(cluster_etcd, tmp_path):
    url, tls, _ = cluster_etcd
    login = etcdauth.load(tls.auth)
    host_port = url.split("://", 1)[1]
    work = tmp_path / "weed"
    (work / "data").mkdir(parents=True)
    (work / "filer.toml").write_text(filer_toml((host_port,), keys.SEAWEEDFS, EtcdTLS(str(tls.ca), str(tls.cert), str(tls.key)),
                                                EtcdLogin(login.user, login.password)))
    master, volume, filer = port_pair(), port_pair(), port_pair()
    log = open(tmp_path / "weed.log", "w")
    proc = subprocess.Popen(
        [weed_binary(), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={work / 'data'}",
         f"-master.port={master}", f"-volume.port={volume}", "-filer", f"-filer.port={filer}",
         "-volume.max=2"], cwd=work, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                answer = requests.post(f"http://127.0.0.1:{filer}/notes/", files={"file": ("hello.txt", b"hi")},
                                       timeout=5)
                if answer.status_code < 300:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "weed.log").read_text()[-3000:]
            time.sleep(1)
        assert requests.get(f"http://127.0.0.1:{filer}/notes/hello.txt", timeout=5).content == b"hi"
        store = Store([url], tls=tls)
        kvs = store.call("/kv/range", {"key": base64.b64encode(keys.SEAWEEDFS.encode()).decode(),
                                       "range_end": base64.b64encode(prefix_end(keys.SEAWEEDFS).encode()).decode(),
                                       "keys_only": True}).get("kvs", [])
        names = [base64.b64decode(kv["key"]) for kv in kvs]
        assert any(b"hello.txt" in n for n in names), names
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
