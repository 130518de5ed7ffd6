"""The control-plane fence (runtime/firewall.py) in a real kernel: network namespaces standing
for a machine, a container behind a podman-named bridge link, and the mesh with an edge and
another machine on it. Servers listen on the machine's control-plane ports; connections are
made the way a container, the edge and a machine make them."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time

import pytest

from runtime import firewall
from vcapp.node import fence_loop

pytestmark = pytest.mark.cluster

MACHINE, PEER_MACHINE, EDGE = "100.96.0.11", "100.96.0.12", "100.96.0.1"
BRIDGE, CONTAINER = "10.99.7.1", "10.99.7.2"
ETCD, S3, ROUTER = 2379, 8333, 7080

SERVE = """
import socket, sys, threading
def serve(addr, port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((addr, port)); s.listen(16)
    while True:
        c, _ = s.accept(); c.sendall(b"hi"); c.close()
for spec in sys.argv[1:]:
    a, p = spec.rsplit(":", 1)
    threading.Thread(target=serve, args=(a, int(p)), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

CONNECT = """
import socket, sys
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(); s.settimeout(2)
if src != "-": s.bind((src, 0))
try:
    s.connect((dst, port)); print("open" if s.recv(2) == b"hi" else "silent")
except ConnectionRefusedError: print("refused")
except OSError as e: print("timeout" if "timed out" in str(e) else f"error {e}")
"""


class Net:
    def __init__(self) -> None:
        tag = secrets.token_hex(2)
        self.m, self.c, self.o = f"vf{tag}m", f"vf{tag}c", f"vf{tag}o"
        self.procs: list[subprocess.Popen] = []

    def ns(self, name: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["nsenter", f"--net=/var/run/netns/{name}", *argv], capture_output=True, text=True,
                              timeout=30)
        if check and proc.returncode != 0:
            raise AssertionError(f"{name}: {argv}: {proc.stderr}")
        return proc

    def up(self) -> None:
        for n in (self.m, self.c, self.o):
            subprocess.run(["ip", "netns", "add", n], check=True)
            self.ns(n, "ip", "link", "set", "lo", "up")
        # the container's link: "podman7" on the machine, like a netavark bridge
        subprocess.run(["ip", "link", "add", "podman7", "netns", self.m, "type", "veth", "peer", "name", "eth0",
                        "netns", self.c], check=True)
        self.ns(self.m, "ip", "addr", "add", f"{BRIDGE}/24", "dev", "podman7")
        self.ns(self.c, "ip", "addr", "add", f"{CONTAINER}/24", "dev", "eth0")
        # the mesh: the edge and another machine beside this machine
        subprocess.run(["ip", "link", "add", "mesh0", "netns", self.m, "type", "veth", "peer", "name", "mesh0",
                        "netns", self.o], check=True)
        self.ns(self.m, "ip", "addr", "add", f"{MACHINE}/16", "dev", "mesh0")
        for addr in (EDGE, PEER_MACHINE):
            self.ns(self.o, "ip", "addr", "add", f"{addr}/16", "dev", "mesh0")
        for n, dev in ((self.m, "podman7"), (self.c, "eth0"), (self.m, "mesh0"), (self.o, "mesh0")):
            self.ns(n, "ip", "link", "set", dev, "up")
        self.ns(self.c, "ip", "route", "add", "default", "via", BRIDGE)
        self.ns(self.o, "ip", "route", "add", "10.99.7.0/24", "via", MACHINE)
        self.ns(self.m, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.serve(self.m, f"0.0.0.0:{ETCD}", f"0.0.0.0:{S3}", f"0.0.0.0:{ROUTER}")
        self.serve(self.o, f"{PEER_MACHINE}:{ETCD}", f"{EDGE}:{ROUTER}")
        time.sleep(0.3)  # nodad addresses are usable at once; give the servers their listen()

    def serve(self, name: str, *specs: str) -> None:
        proc = subprocess.Popen(["nsenter", f"--net=/var/run/netns/{name}", sys.executable, "-c", SERVE, *specs],
                                stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        self.procs.append(proc)

    def connect(self, name: str, dst: str, port: int, src: str = "-") -> str:
        return self.ns(name, sys.executable, "-c", CONNECT, src, dst, str(port)).stdout.strip()

    def down(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        for n in (self.m, self.c, self.o):
            subprocess.run(["ip", "netns", "del", n], check=False)


class NsShell:
    """The runtime's Shell, aimed at the machine's namespace."""

    def __init__(self, net: Net):
        self.net = net

    def run(self, argv, timeout=30):
        return self.net.ns(self.net.m, *argv, check=False)


@pytest.fixture
def net():
    n = Net()
    try:
        n.up()
        yield n
    finally:
        n.down()


def fence_for(machines: list[str]) -> firewall.Fence:
    records = {f"m{i}": {"addr": a} for i, a in enumerate(machines)}
    return fence_loop.desired(records)


def test_containers_reach_no_control_plane_and_the_edge_no_machine_only_port(net):
    # Without the fence, everything is open: the test can tell the difference.
    assert net.connect(net.c, BRIDGE, ETCD) == "open"
    assert net.connect(net.c, PEER_MACHINE, ETCD) == "open"
    assert net.connect(net.o, MACHINE, ETCD, src=EDGE) == "open"

    firewall.apply(NsShell(net), fence_for([MACHINE, PEER_MACHINE]))
    assert firewall.present(NsShell(net))
    # A container: this machine's etcd on any of its addresses, and its router, are refused at once.
    assert net.connect(net.c, BRIDGE, ETCD) == "refused"
    assert net.connect(net.c, MACHINE, ETCD) == "refused"
    assert net.connect(net.c, MACHINE, ROUTER) == "refused"
    # ... the S3 gateway of its bucket answers;
    assert net.connect(net.c, MACHINE, S3) == "open"
    # ... another machine's control plane, and anything on the mesh (the edge), are refused.
    assert net.connect(net.c, PEER_MACHINE, ETCD) == "refused"
    assert net.connect(net.c, EDGE, ROUTER) == "refused"
    # The edge: the node router yes, etcd no. Another machine: etcd yes.
    assert net.connect(net.o, MACHINE, ROUTER, src=EDGE) == "open"
    assert net.connect(net.o, MACHINE, ETCD, src=EDGE) == "refused"
    assert net.connect(net.o, MACHINE, ETCD, src=PEER_MACHINE) == "open"


def test_a_removed_machine_loses_the_machine_only_ports_and_a_reload_keeps_one_table(net):
    shell = NsShell(net)
    firewall.apply(shell, fence_for([MACHINE, PEER_MACHINE]))
    assert net.connect(net.o, MACHINE, ETCD, src=PEER_MACHINE) == "open"
    firewall.apply(shell, fence_for([MACHINE]))  # PEER_MACHINE was removed from the cluster
    assert net.connect(net.o, MACHINE, ETCD, src=PEER_MACHINE) == "refused"
    tables = net.ns(net.m, "nft", "list", "tables").stdout.split("\n")
    assert tables.count(f"table inet {firewall.TABLE}") == 1


def test_with_no_member_known_containers_are_fenced_and_peers_are_not_locked_out(net):
    """At boot with etcd not answering, the members are unknown: refusing every mesh peer
    would keep etcd from forming, so only the container rules apply."""
    firewall.apply(NsShell(net), fence_for([]))
    assert net.connect(net.c, BRIDGE, ETCD) == "refused"
    assert net.connect(net.o, MACHINE, ETCD, src=PEER_MACHINE) == "open"
