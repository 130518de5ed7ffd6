"""Fixtures for storage tests: a simulated 3-machine site running etcd and SeaweedFS.

`SimHost` is the storage.host.Host of a simulated machine. `storage_sim` (module scope)
boots three machines on one LAN; `start_storage_cluster` starts a 3-member etcd on them (a
service of each machine, so it returns when the machine is revived) and the storage
agent's processes on every machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage import storaged
from storage.host import weed_binary
from storage.plan import ClusterPlan, Machine, plan_cluster
from vcapp.dev.cluster import DevCluster
from vcapp.dev.topology import default
from vcapp.state import keys

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
ETCD_READY_TIMEOUT = 30.0  # a 3-member etcd elects a leader within a few seconds


class SimHost:
    """A simulated machine as storage/ sees it: run and spawn on it."""

    def __init__(self, dc: DevCluster, name: str):
        self.dc = dc
        self.name = name

    def run(self, argv: list[str], *, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return self.dc.run(self.name, argv, input=input, timeout=timeout)

    def spawn(self, argv: list[str], cwd: Path, log: Path) -> int:
        return self.dc.spawn(self.name, argv, log=log, cwd=cwd).pid

    @property
    def data_dir(self) -> Path:
        return Path(self.dc.host_env(self.name)["VCAPP_DATA_DIR"])

    @property
    def run_dir(self) -> Path:
        return Path(self.dc.host_env(self.name)["VCAPP_RUN_DIR"])


def etcd_command(name: str, addr: str, members: dict[str, str], data_dir: Path) -> list[str]:
    cluster = ",".join(f"{n}=http://{a}:{ETCD_PEER_PORT}" for n, a in members.items())
    return [
        "etcd", "--name", name, "--data-dir", str(data_dir / "etcd"),
        "--listen-client-urls", f"http://{addr}:{ETCD_CLIENT_PORT}",
        "--advertise-client-urls", f"http://{addr}:{ETCD_CLIENT_PORT}",
        "--listen-peer-urls", f"http://{addr}:{ETCD_PEER_PORT}",
        "--initial-advertise-peer-urls", f"http://{addr}:{ETCD_PEER_PORT}",
        "--initial-cluster", cluster, "--initial-cluster-state", "new",
        "--initial-cluster-token", "vcapp-storage-test",
    ]


def wait_etcd(host: SimHost, endpoints: list[str]) -> None:
    deadline = time.monotonic() + ETCD_READY_TIMEOUT
    while True:
        out = host.run(["etcdctl", "--endpoints", ",".join(endpoints), "endpoint", "health"], timeout=15)
        if out.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"etcd not healthy after {ETCD_READY_TIMEOUT}s: {out.stdout}{out.stderr}")
        time.sleep(0.5)


@dataclass
class StorageCluster:
    dc: DevCluster
    plan: ClusterPlan
    hosts: dict[str, SimHost]
    etcd: list[str]
    weed: str

    def host(self, name: str) -> SimHost:
        return self.hosts[name]

    def converge(self, name: str) -> list[str]:
        h = self.hosts[name]
        started = storaged.converge(self.plan, h, h.data_dir, h.run_dir, self.weed)
        storaged.wait_ready(self.plan, h)
        return started

    def addr(self, name: str) -> str:
        return self.plan.machine(name).addr


def start_storage_cluster(dc: DevCluster, names: list[str], sites: dict[str, str] | None = None) -> StorageCluster:
    """Start etcd and the storage agent on machines `names` of a booted DevCluster."""
    topo = dc.topology
    addrs = {n: topo.host(n).addr for n in names}
    hosts = {n: SimHost(dc, n) for n in names}
    for n in names:
        dc.add_service(n, "etcd", etcd_command(n, addrs[n], addrs, hosts[n].data_dir))
    endpoints = [f"{a}:{ETCD_CLIENT_PORT}" for a in addrs.values()]
    wait_etcd(hosts[names[0]], endpoints)
    sites = sites or {n: topo.host(n).site for n in names}
    plan = plan_cluster([Machine(n, sites[n], addrs[n]) for n in names], endpoints, keys.SEAWEEDFS)
    cluster = StorageCluster(dc, plan, hosts, endpoints, weed_binary())
    for n in names:
        storaged.converge(plan, hosts[n], hosts[n].data_dir, hosts[n].run_dir, cluster.weed)
    for n in names:
        storaged.wait_ready(plan, hosts[n])
    return cluster


@pytest.fixture(scope="module")
def storage_sim():
    """A 3-machine LAN (home-1..3) under its own name (s<hex>): other test sessions clean up
    stale t<hex> clusters at start, and must not take this one down while it runs."""
    if os.geteuid() != 0:
        pytest.fail("storage cluster tests create network namespaces: run them as root")
    dc = DevCluster("s" + secrets.token_hex(2))
    try:
        dc.up(default(dc.name, 3, 0))
        yield dc
    finally:
        keep_logs(dc)
        dc.down()


def keep_logs(dc: DevCluster) -> None:
    """Copy every machine's storage logs to artifacts/storage-<cluster>/ before teardown."""
    for host in ("home-1", "home-2", "home-3"):
        src = dc.host_dir(host) / "data" / "storage" / "log"
        if src.is_dir():
            shutil.copytree(src, ARTIFACTS / f"storage-{dc.name}" / host, dirs_exist_ok=True)


class EtcdWriterStore:
    """storage.guard.WriterStore on a real etcd through etcdctl, bound to one node's lease.

    Stands in for the control plane's client. Values are hex-encoded so etcdctl's txn
    syntax never has to quote JSON. `expire()` revokes the lease, as etcd does when the
    node stops renewing it."""

    LEASE_TTL = 60  # seconds; the test ends the lease itself with expire()

    def __init__(self, host: SimHost, endpoints: list[str]):
        self.host, self.endpoints = host, ",".join(endpoints)
        self.lease = self._ctl("lease", "grant", str(self.LEASE_TTL)).split()[1]

    def _ctl(self, *args: str, input: str | None = None) -> str:
        out = self.host.run(["etcdctl", "--endpoints", self.endpoints, *args], input=input, timeout=30)
        if out.returncode != 0:
            raise AssertionError(f"etcdctl {' '.join(args)}: {out.stderr}")
        return out.stdout

    def get(self, key: str) -> str | None:
        raw = self._ctl("get", key, "--print-value-only").strip()
        return bytes.fromhex(raw).decode() if raw else None

    def put_if_absent(self, key: str, value: str) -> bool:
        txn = f'create("{key}") = "0"\n\nput {key} {value.encode().hex()} --lease={self.lease}\n\n\n'
        return self._ctl("txn", input=txn).startswith("SUCCESS")

    def delete_if_equal(self, key: str, value: str) -> bool:
        txn = f'value("{key}") = "{value.encode().hex()}"\n\ndel {key}\n\n\n'
        return self._ctl("txn", input=txn).startswith("SUCCESS")

    def expire(self) -> None:
        self._ctl("lease", "revoke", self.lease)
