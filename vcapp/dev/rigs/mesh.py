"""The mesh alone on a simulated cluster: `vcapp mesh edge` on the edge and `vcapp mesh up` on
each machine, started exactly as the control plane starts them, and a `Mesh` to read each
machine's status and wait for paths.

Routers: like real home routers (OpenWrt's wan zone rejects input), the simulated routers
are made to drop unsolicited UDP addressed to themselves. Without that, a hole-punch packet
that arrives before the other side has sent creates a conntrack entry on that router whose
tuple clashes with the mapping the other side needs, the router then rewrites that side's
port, and simultaneous-open never succeeds on two Linux NATs talking over one bridge.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from mesh import auth, wg
from vcapp.dev import netns
from vcapp.dev.rigs.waiting import wait_for

VCAPP = str(Path(sys.executable).parent / "vcapp")
COORD_PORT = 8443
MACHINES = {"home-1": "100.96.1.1", "home-2": "100.96.1.2", "office-1": "100.96.2.1"}
# Shorter retries than production (60 s / 15 s) so recovery tests stay within a few seconds.
TEST_DIRECT_RETRY = "10"
TEST_EDGE_UDP_RETRY = "5"
POLL = 0.5


def realistic_router_input(sim) -> None:
    """Routers drop unsolicited UDP to themselves (see the module docstring)."""
    for router in ("home", "office"):
        netns.iptables(sim.topology.ns(router), "-A", "INPUT", "-i", "wan", "-p", "udp",
                       "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP")


def short(host: str) -> str:
    return host[0] + host.rsplit("-", 1)[1] if "-" in host else host[0]


class Mesh:
    """The mesh on a simulated cluster, as seen from its machines."""

    def __init__(self, sim, key: bytes, logs: Path):
        self.sim, self.key = sim, key
        self.coord = f"http://{sim.addr('edge')}:{COORD_PORT}/_mesh"
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, object] = {}

    def interface(self, host: str) -> str:
        return f"vm{self.sim.name}{short(host)}"

    def ip(self, host: str) -> str:
        return MACHINES[host]

    def start_edge(self) -> None:
        keyfile = self.sim.dc.host_dir("edge") / "data" / "mesh.key"
        keyfile.parent.mkdir(parents=True, exist_ok=True)
        keyfile.write_text(self.key.hex())
        self.procs["edge"] = self.sim.spawn("edge", VCAPP, "mesh", "edge", "--listen", f"0.0.0.0:{COORD_PORT}",
                       "--mesh-key-file", str(keyfile), "--interface", self.interface("edge"),
                       log=self.logs / "edge.log")

    def start_machine(self, host: str) -> None:
        cred = self.sim.dc.host_dir(host) / "data" / "mesh.credential"
        cred.parent.mkdir(parents=True, exist_ok=True)
        cred.write_text(auth.issue_credential(self.key, host, self.ip(host)))
        self.procs[host] = self.sim.spawn(host, VCAPP, "mesh", "up", "--coord", self.coord, "--node", host, "--mesh-ip", self.ip(host),
                       "--credential-file", str(cred), "--interface", self.interface(host),
                       "--direct-retry", TEST_DIRECT_RETRY, "--edge-udp-retry", TEST_EDGE_UDP_RETRY,
                       log=self.logs / f"{host}.log")

    def status(self, host: str) -> dict:
        path = self.sim.dc.run_dir(host) / "mesh" / "status.json"
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def path(self, host: str, peer: str) -> str | None:
        for p in self.status(host).get("peers", []):
            if p["node"] == peer:
                return p["path"]
        return None

    def wait(self, what: str, cond, timeout: float) -> float:
        """Poll `cond` until true; return seconds taken, fail with the statuses otherwise."""
        start = time.monotonic()
        wait_for(cond, timeout, what, POLL, detail=self._paths_now)
        return time.monotonic() - start

    def _paths_now(self) -> str:
        snap = {h: [(p["node"], p["path"]) for p in self.status(h).get("peers", [])] for h in MACHINES}
        return f"paths now {snap}; logs in {self.logs}"

    def wait_path(self, host: str, peer: str, want: str, timeout: float) -> float:
        return self.wait(f"{host} -> {peer} path {want}", lambda: self.path(host, peer) == want, timeout)

    def ping(self, host: str, peer: str, count: int = 1, size: int = 56) -> bool:
        return self.sim.run(host, "ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", "-s", str(size),
                            self.ip(peer), check=False).returncode == 0

    def wait_ping(self, host: str, peer: str, timeout: float) -> float:
        return self.wait(f"{host} pings {peer} over the overlay", lambda: self.ping(host, peer), timeout)

    def forget_sockets(self) -> None:
        """wireguard-go killed with its machine leaves its UAPI socket in the shared directory."""
        for host in ["edge", *MACHINES]:
            (wg.UAPI_DIR / f"{self.interface(host)}.sock").unlink(missing_ok=True)

    def settle(self, timeout: float = 40) -> None:
        """Wait until every pair is back on its best path (lan at home, direct across sites)."""
        want = {("home-1", "home-2"): "lan", ("home-2", "home-1"): "lan", ("home-1", "office-1"): "direct",
                ("office-1", "home-1"): "direct", ("home-2", "office-1"): "direct", ("office-1", "home-2"): "direct"}
        self.wait("every pair on its best path", lambda: all(self.path(a, b) == p for (a, b), p in want.items()), timeout)
