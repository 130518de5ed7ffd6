"""A running simulated cluster as a person at its machines sees it: run a command on a host,
fetch a URL from the client, ping, use etcdctl with the host's certificate."""

from __future__ import annotations

import subprocess
from pathlib import Path

from vcapp import etcdtls
from vcapp.dev.cluster import DevCluster
from vcapp.dev.topology import Topology
from vcapp.machine import ETCD_CLIENT_PORT

LEARNER_REFUSED = "rpc not supported for learner"


class Sim:
    """A running simulated cluster as tests see it."""

    def __init__(self, dc: DevCluster):
        self.dc = dc
        self.name = dc.name

    @property
    def topology(self) -> Topology:
        return self.dc.topology

    def run(self, host: str, *cmd: str, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        """Run a command on a host; with check, a failure raises with its output."""
        proc = self.dc.run(host, list(cmd), timeout=timeout, **kw)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"on {host}: {' '.join(cmd)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def spawn(self, host: str, *cmd: str, log: Path | None = None) -> subprocess.Popen:
        return self.dc.spawn(host, list(cmd), log=log)

    def fetch(self, url: str, *curl_args: str, host: str = "client", timeout: float = 10) -> subprocess.CompletedProcess:
        """curl a URL from a host (the client on the backbone by default)."""
        return self.run(host, "curl", "-sS", "--max-time", str(timeout), *curl_args, url, check=False,
                        timeout=timeout + 5)

    def addr(self, host: str) -> str:
        return self.topology.host(host).addr

    def etcdctl(self, host: str, addrs: list[str], *args: str, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess:
        """etcdctl on `host` against the etcd members at `addrs`, with `host`'s etcd
        certificate (etcd admits no client without one from the cluster CA).

        etcdctl 3.4 logs in through whichever endpoint its balancer picks, and a learner refuses
        the login ("rpc not supported for learner"): then each member is asked alone, in turn."""
        tls = etcdtls.paths(self.dc.host_dir(host) / "data")

        def at(members: list[str], check: bool) -> subprocess.CompletedProcess:
            endpoints = ",".join(f"https://{a}:{ETCD_CLIENT_PORT}" for a in members)
            return self.run(host, "etcdctl", "--endpoints", endpoints, *tls.etcdctl_flags(), *args,
                            check=check, timeout=timeout)

        proc = at(addrs, check=False)
        for alone in addrs if len(addrs) > 1 and LEARNER_REFUSED in proc.stderr else ():
            proc = at([alone], check=False)
            if proc.returncode == 0:
                break
        if check and proc.returncode != 0:
            raise AssertionError(f"on {host}: etcdctl {' '.join(args)} against {addrs} exited {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def ping(self, host: str, target: str, count: int = 1, wait: float = 1) -> bool:
        return self.run(host, "ping", "-c", str(count), "-W", str(wait), target, check=False).returncode == 0
