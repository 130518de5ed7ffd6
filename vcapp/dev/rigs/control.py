"""vcapp running on a simulated cluster: the node daemon as a boot service on every machine,
`vcapp cluster init` on the first, `vcapp node join` on the rest, each admin CLI logged in."""

from __future__ import annotations

import json
import re

from builder.baseimage import tiny_build_command, tiny_context
from vcapp.dev.rigs.waiting import wait_for
from vcapp.edge import setup as edge_setup
from vcapp.node import service

# Short enough for a test to see a dead member replaced, long enough not to race the kill.
TEST_REPLACE_AFTER = 6
VOTERS_WAIT_S = 120  # each new member a learner until caught up: seconds, longer on a loaded host


class ControlCluster:
    def __init__(self, sim, machines: list[str]):
        self.sim = sim
        self.machines = machines
        self.admin_token = ""
        self.join_token = ""
        self.mesh_key = ""

    def boot_daemons(self) -> None:
        for m in self.machines:
            self.sim.dc.add_service(m, "vcapp-node", [*service.boot_argv(), "--replace-after", str(TEST_REPLACE_AFTER)])

    def init(self, first: str, site: str = "home", edge: str = "") -> None:
        """Found the cluster; with `edge` (the edge's coordination host:port) over the mesh."""
        mesh = ["--edge", edge] if edge else []
        out = self.sim.run(first, "vcapp", "cluster", "init", "--name", "acme", "--domain", "apps.test",
                           *mesh, "--site", site).stdout
        self.admin_token = re.search(r"vcadm_\S+", out).group(0)
        self.join_token = re.search(r"vcjoin_\S+", out).group(0)
        found = re.search(r"mesh key \(secret; shown once\):\s+([0-9a-f]+)", out)
        self.mesh_key = found.group(1) if found else ""

    def start_edge_mesh(self) -> None:
        """The edge's side of the mesh, with the key `cluster init` printed, as `vcapp edge setup`
        makes it: the key in a root-only file, the unit's command started at boot."""
        proc = self.sim.run("edge", "vcapp", "edge", "setup", "--mesh-key-file", "-", input=self.mesh_key)
        assert "vcapp-mesh-edge.service" in proc.stdout, proc.stdout
        data = self.sim.dc.host_dir("edge") / "data"
        unit = edge_setup.units(data, edge_setup.DEFAULT_LISTEN, None)[edge_setup.MESH_UNIT]
        self.sim.dc.add_service("edge", "mesh-edge", service.exec_start_of(unit))

    def join(self, machine: str, site: str = "home", token: str | None = None, check: bool = True):
        return self.sim.run(machine, "vcapp", "node", "join", token or self.join_token, "--site", site, check=check)

    def vcapp(self, machine: str, *args: str, check: bool = True):
        return self.sim.run(machine, "vcapp", *args, check=check)

    def etcd(self, machine: str, *args: str, check: bool = True):
        """etcdctl on a machine against its local etcd view."""
        return self.sim.etcdctl(machine, [self.sim.addr(m) for m in self.machines], *args, check=check)

    def nodes(self, machine: str) -> dict:
        return {n["name"]: n for n in json.loads(self.vcapp(machine, "nodes", "--json").stdout)}

    def all_up(self, machine: str = "home-1") -> dict | None:
        """The node records if every machine is up, else None (also while the API waits for etcd)."""
        try:
            nodes = self.nodes(machine)
        except AssertionError:
            return None
        return nodes if all(n["up"] for n in nodes.values()) else None

    def wait(self, cond, timeout: float, what: str, interval: float = 0.25):
        return wait_for(cond, timeout, what, interval)

    def voters(self, machine: str = "home-1") -> int:
        """How many etcd members vote (a learner catching up does not)."""
        out = self.etcd(machine, "member", "list", "-w", "json", check=False).stdout
        try:
            return sum(1 for m in json.loads(out).get("members", []) if not m.get("isLearner"))
        except ValueError:
            return 0

    def wait_voters(self, count: int, timeout: float = VOTERS_WAIT_S) -> None:
        """Until `count` etcd members vote: only then does the cluster keep its quorum when a
        machine dies (the controller adds members one at a time, each a learner until caught up)."""
        self.wait(lambda: self.voters() >= count, timeout, f"{count} etcd voters", interval=1)


def start_machines(sim, tiny_dir, labels: dict[str, str] | None = None, up_timeout: float = 60,
                count: int = 3) -> ControlCluster:
    """vcapp on the first `count` home machines of `sim` (home-1..3 by default): the tiny
    test image on each, the cluster founded on home-1, the others joined, the admin CLI of
    every machine logged in to its own API. `labels`: machine -> KEY=VALUE."""
    machines = [f"home-{i}" for i in range(1, count + 1)]
    labels = labels or {}
    ctx = tiny_context(tiny_dir)
    for host in machines:
        sim.run(host, *tiny_build_command(ctx), timeout=300)
    cc = ControlCluster(sim, machines)
    cc.boot_daemons()
    cc.init("home-1")
    for host in machines[1:]:
        extra = ["--label", labels[host]] if host in labels else []
        sim.run(host, "vcapp", "node", "join", cc.join_token, "--site", "home", *extra)
    cc.wait(lambda: len(cc.all_up() or {}) == count, up_timeout, f"{count} machines up")
    cc.wait_voters(3)
    for host in machines[1:]:  # each admin CLI talks to its own machine's API
        sim.run(host, "vcapp", "login", f"http://{sim.addr(host)}:7180", "--token-stdin", input=cc.admin_token)
    return cc
