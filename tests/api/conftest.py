"""Fixtures for the admin API and CLI tests: a real single-member etcd on loopback, a founded
cluster in it, the Flask test client, and the API served by its real server (cheroot)."""

from __future__ import annotations

import base64
import io
import json
import os
import secrets as pysecrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from minio import Minio

from storage.host import weed_binary
from vcapp import etcdtls, joinbox
from vcapp.api.app import ApiConfig, create_app
from vcapp.dev.rigs.etcd import free_port, lone_etcd
from vcapp.state import keys, membership
from vcapp.state.store import Store

SERVER_START_TIMEOUT = 20
REPO = Path(__file__).resolve().parents[2]
CLUSTER_KEY = bytes(range(32))  # what the serving machine keeps in <data dir>/keys/cluster.key
MACHINE_ETCD_KEY = etcdtls.new_key()  # a joining machine's etcd key; its CSR rides in the join
JOIN_KEY = joinbox.cluster_public(CLUSTER_KEY)  # what the cluster's join tokens pin


@pytest.fixture(scope="session")
def etcd_url(tmp_path_factory):
    """The session's etcd, shared by the API tests."""
    with lone_etcd(tmp_path_factory.mktemp("etcd")) as (url, _):
        yield url


class CountingStore(Store):
    """A Store that records the path of every request it sends to etcd."""

    def __init__(self, endpoints):
        super().__init__(endpoints)
        self.sent: list[str] = []

    def _call(self, path, payload):
        self.sent.append(path)
        return super()._call(path, payload)


def wipe(store: Store) -> None:
    store.delete("/vc/", prefix=True)


@dataclass
class Cluster:
    store: Store
    admin: str   # the initial admin token
    join: str    # the initial join token
    etcd_url: str


FIRST = membership.NodeInfo(name="home-1", site="home", addr="10.0.0.1", api_url="http://10.0.0.1:7180",
                            resources={"cpus": 4, "memory_mb": 8000, "free_memory_mb": 6000,
                                       "disk_mb": 100_000, "free_disk_mb": 60_000},
                            version="0.1.0", build="84b3173aa0f1")


def found(etcd_url: str, max_nodes: int = 10) -> Cluster:
    store = Store([etcd_url])
    wipe(store)
    admin, join = membership.create_cluster(store, name="acme", domain="apps.example.com",
                                            edge="edge.example.com:443", first=FIRST, max_nodes=max_nodes,
                                            join_key=JOIN_KEY)
    store.put(keys.ETCD_CA, {"cert": etcdtls.make_ca(CLUSTER_KEY, "acme").decode()})  # as `cluster init`
    return Cluster(store, str(admin), str(join), etcd_url)


@pytest.fixture
def hanging_member():
    """Accepts connections, never answers: what a member without a leader (or a machine that
    died with the connection open) looks like to an etcd client."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.fixture
def cluster(etcd_url) -> Cluster:
    """A freshly founded cluster `acme` with one machine, home-1 (records only, no daemon)."""
    return found(etcd_url)


@dataclass
class JoinAnswer:
    """A join as a machine sees it: the status, the opened answer (201) or the refusal, and
    the answer's body exactly as it crossed the wire."""

    status_code: int
    json: dict
    wire: bytes


def sealed_join(post, token: str, node: dict) -> JoinAnswer:
    """POST /v1/join sealed as `vcapp node join` does (vcapp/joinbox.py); `post(body)` sends the
    wire body and returns (status, answer body bytes)."""
    sealed = joinbox.seal_request(JOIN_KEY, {"token": token, "node": node,
                                             "csr": etcdtls.make_csr(MACHINE_ETCD_KEY, node["name"])})
    status, wire = post(sealed.body)
    answer = json.loads(wire)
    return JoinAnswer(status, sealed.open_answer(answer) if status == 201 else answer, wire)


def client_post(api):
    """`post` for sealed_join through the Flask test client."""
    def post(body: dict) -> tuple[int, bytes]:
        response = api.post("/v1/join", json=body)
        return response.status_code, response.get_data()
    return post


@pytest.fixture
def node_dir(tmp_path, monkeypatch):
    """This machine's data dir (its repositories, its cluster key, which seals and unseals
    secrets) for the API under test."""
    data = tmp_path / "node"
    (data / "keys").mkdir(parents=True)
    (data / "keys" / "cluster.key").write_text(base64.b64encode(CLUSTER_KEY).decode())
    monkeypatch.setenv("VCAPP_DATA_DIR", str(data))
    return data


@pytest.fixture
def api(etcd_url):
    """The Flask test client of the admin API over the test etcd."""
    return create_app(ApiConfig.for_endpoints([etcd_url], "home-1", lambda: CLUSTER_KEY)).test_client()


@pytest.fixture(scope="module")
def served(tmp_path_factory, etcd_url):
    """The admin API served by its real server (vcapp/api/serve.py, as the node daemon runs it), reading a real
    node.json; yields (base url, cluster). Stopped after the module."""
    cluster = found(etcd_url)
    data = tmp_path_factory.mktemp("node")
    port = free_port()
    (data / "node.json").write_text(
        '{"cluster": "acme", "name": "home-1", "site": "home", "addr": "127.0.0.1", '
        f'"api_port": {port}, "endpoints": ["{etcd_url}"]}}')
    (data / "keys").mkdir(mode=0o700)
    (data / "keys" / "cluster.key").write_text(base64.b64encode(CLUSTER_KEY).decode())
    env = dict(os.environ, VCAPP_DATA_DIR=str(data), PYTHONPATH=str(REPO))
    log = open(data / "api.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "vcapp.api.serve", f"127.0.0.1:{port}"], env=env, cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz", proc, data / "api.log")
        yield url, cluster, proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def wait_http(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the API server exited {proc.returncode}:\n{log.read_text()}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not healthy after {SERVER_START_TIMEOUT}s:\n{log.read_text()}")


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def vcapp_cli(tmp_path):
    """Run `vcapp ...` as a person would: a separate process, its own HOME (so its own global
    git config: `vcapp login` writes there), no VCAPP_* or GIT_* env; in the repository's
    directory unless `cwd` says where."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VCAPP_", "XDG_CONFIG", "GIT_"))}
    env.update(HOME=str(home), PYTHONPATH=str(REPO))

    def run(*args: str, timeout: float = 30, extra_env: dict | None = None, input: str | None = None,
            cwd: Path = REPO) -> CliResult:
        proc = subprocess.run([sys.executable, "-m", "vcapp", *args], env=env | (extra_env or {}),
                              capture_output=True, text=True, timeout=timeout, cwd=cwd, input=input)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    run.home = home
    run.env = env
    return run


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


# ---- an S3 service outside the cluster ---------------------------------------------------------

# A lone `weed server` elects its master, registers its volume server and opens S3 within a few
# seconds; a minute covers a loaded 2-core machine.
WEED_START_TIMEOUT = 60.0
ADMIN_KEY, ADMIN_SECRET = "VCTESTADMIN", "external-admin-secret-" + pysecrets.token_hex(8)


@dataclass
class External:
    endpoint: str
    netloc: str
    log: Path

    def client(self, access: str = ADMIN_KEY, secret: str = ADMIN_SECRET) -> Minio:
        return Minio(self.netloc, access_key=access, secret_key=secret, secure=False)


@pytest.fixture(scope="module")
def external_s3(tmp_path_factory):
    """A standalone SeaweedFS with an admin identity: the external S3 service. Killed after the module."""
    base = tmp_path_factory.mktemp("external-s3")
    (base / "data").mkdir()
    config = {"identities": [{"name": "admin", "credentials": [{"accessKey": ADMIN_KEY, "secretKey": ADMIN_SECRET}],
                              "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
    (base / "s3.json").write_text(json.dumps(config))
    ports = {name: free_port() for name in ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc",
                                            "s3", "s3_grpc")}
    argv = [weed_binary(), "server", f"-dir={base / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}", f"-master.port.grpc={ports['master_grpc']}",
            "-master.volumeSizeLimitMB=64", "-volume.max=0",
            f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume_grpc']}",
            "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer_grpc']}",
            "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3_grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={base / 's3.json'}", "-s3.iam.readOnly=false"]
    log = base / "weed.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=base)
    ext = External(f"http://127.0.0.1:{ports['s3']}", f"127.0.0.1:{ports['s3']}", log)
    try:
        _wait_writable(ext, proc)
        yield ext
    finally:
        proc.kill()
        proc.wait(10)


def _wait_writable(ext: External, proc: subprocess.Popen) -> None:
    """Until the admin key can write an object (master elected, volume server registered)."""
    deadline, last = time.monotonic() + WEED_START_TIMEOUT, None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"weed server exited {proc.returncode}:\n{ext.log.read_text()[-3000:]}")
        try:
            client = ext.client()
            if not client.bucket_exists("probe"):
                client.make_bucket("probe")
            client.put_object("probe", "ready", io.BytesIO(b"1"), 1)
            return
        except Exception as e:  # not up yet: connection refused, 5xx while volumes grow
            last = e
            time.sleep(0.5)
    raise AssertionError(f"external S3 not writable after {WEED_START_TIMEOUT}s: {last}\n"
                         f"{ext.log.read_text()[-3000:]}")
