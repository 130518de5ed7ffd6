"""Storage alone on a simulated cluster: a 3-member etcd (a service of each machine, so it
returns when the machine is revived) and the storage daemon's processes on every machine.
`SimHost` is the storage.host.Host of a simulated machine."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from storage import storaged
from storage.host import weed_binary
from storage.plan import ClusterPlan, Machine, plan_cluster
from vcapp.dev.cluster import DevCluster
from vcapp.dev.rigs.waiting import wait_for
from vcapp.node.storage_loop import CONVERGE_EVERY_S
from vcapp.state import keys

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
    def healthy() -> bool:
        out = host.run(["etcdctl", "--endpoints", ",".join(endpoints), "endpoint", "health"], timeout=15)
        last[0] = out.stdout + out.stderr
        return out.returncode == 0
    last = [""]
    wait_for(healthy, ETCD_READY_TIMEOUT, "etcd healthy", 0.5, detail=lambda: last[0])


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

    @contextmanager
    def supervised(self, names: list[str]) -> Iterator[list[tuple[float, str, list[str]]]]:
        """Within the block, every CONVERGE_EVERY_S, start again each storage process of
        machines `names` that died, as the daemon's storage loop does (a SeaweedFS process
        may crash on its own: a filer panicked in CreateEntry seconds after a machine died).
        Yields the restarts as they happen: (epoch s, machine, process names)."""
        restarts: list[tuple[float, str, list[str]]] = []
        done = threading.Event()

        def supervise() -> None:
            while not done.wait(CONVERGE_EVERY_S):
                for name in names:
                    h = self.hosts[name]
                    if started := storaged.converge(self.plan, h, h.data_dir, h.run_dir, self.weed):
                        restarts.append((time.time(), name, started))

        thread = threading.Thread(target=supervise, name="storage-supervisor", daemon=True)
        thread.start()
        try:
            yield restarts
        finally:
            done.set()
            thread.join()


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
