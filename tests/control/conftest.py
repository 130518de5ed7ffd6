"""A simulated cluster with vcapp running on its machines: the node daemon as a boot
service on every machine, `vcapp cluster init` on the first, `vcapp node join` on the rest."""

from __future__ import annotations

import re
import time

import pytest

# Short enough for a test to see a dead member replaced, long enough not to race the kill.
TEST_REPLACE_AFTER = 6


class ControlCluster:
    def __init__(self, sim, machines: list[str]):
        self.sim = sim
        self.machines = machines
        self.admin_token = ""
        self.join_token = ""

    def boot_daemons(self) -> None:
        for m in self.machines:
            self.sim.dc.add_service(m, "vcapp-node", ["vcapp", "node", "run", "--replace-after", str(TEST_REPLACE_AFTER)])

    def init(self, first: str, site: str = "home", edge: str = "") -> None:
        """Found the cluster; with `edge` (the edge's coordination host:port) over the mesh."""
        mesh = ["--edge", edge] if edge else []
        out = self.sim.run(first, "vcapp", "cluster", "init", "--name", "acme", "--domain", "apps.test",
                           *mesh, "--site", site).stdout
        self.admin_token = re.search(r"vcadm_\S+", out).group(0)
        self.join_token = re.search(r"vcjoin_\S+", out).group(0)

    def join(self, machine: str, site: str = "home", token: str | None = None, check: bool = True):
        return self.sim.run(machine, "vcapp", "node", "join", token or self.join_token, "--site", site, check=check)

    def vcapp(self, machine: str, *args: str, check: bool = True):
        return self.sim.run(machine, "vcapp", *args, check=check)

    def etcd(self, machine: str, *args: str, check: bool = True):
        """etcdctl on a machine against its local etcd view."""
        return self.sim.run(machine, "etcdctl", "--endpoints", ",".join(
            f"http://{self.sim.addr(m)}:2379" for m in self.machines), *args, check=check)

    def nodes(self, machine: str) -> dict:
        import json

        return {n["name"]: n for n in json.loads(self.vcapp(machine, "nodes", "--json").stdout)}

    def wait(self, cond, timeout: float, what: str, interval: float = 0.25):
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)
