"""The machine's control-plane fence: what containers (apps and build steps) and mesh peers
that are not machines of the cluster may reach, enforced by the kernel (nftables).

Containers are untrusted code. Every app and every build step runs behind a podman bridge
(netavark names them podman0, podman1, ...), so its packets enter this machine on an
interface matching CONTAINER_IFACES. The fence, one nftables table of its own:

    table inet vcapp_fence
      set machines          the cluster machines' addresses (mesh addresses in production)
      chain input   (packets to this machine itself)
        from a container:  replies of connections this machine opened -> accept
                           DNS to the bridge (aardvark-dns), the ports in `container_ports`
                           (the S3 gateway of the app's bucket) -> accept
                           anything else (etcd, API, registry, storage, router...) -> reject
        from the mesh, not a machine (an edge, a stray peer), to `machine_only_ports`
                           (etcd, registry, storage, the router-to-router port) -> reject;
                           with no machine known yet (etcd not answering at boot) this rule
                           waits: refusing every peer would keep etcd from ever forming
      chain forward (packets routed through this machine)
        from a container:  replies -> accept; to the mesh or to any machine's address -> reject

A container still reaches the internet (and other apps through their public URLs at the
edge); nothing of the control plane on any machine. The table only rejects: it is placed
before the filter hooks of netavark's iptables rules, and an accept here ends nothing there.
Rejects answer at once (TCP reset / ICMP admin-prohibited), so a probe fails fast instead
of timing out.

`render(Fence)` is pure; `apply` loads it atomically (`nft -f`: the old table goes and the
new one comes in one transaction, never a moment without the fence).
"""

from __future__ import annotations

import ipaddress
import tempfile
from dataclasses import dataclass

from runtime.shell import Shell

TABLE = "vcapp_fence"
CONTAINER_IFACES = "podman*"
DNS_PORT = 53
# Before the iptables-nft "filter" chains (priority 0) so a reject cannot be preceded by
# netavark's ACCEPT of the same packet in another table.
PRIORITY = -10


class FenceError(OSError):
    """The fence could not be read or loaded; the message carries nft's own words."""


@dataclass(frozen=True)
class Fence:
    """mesh_cidr: the mesh's range. machines: the cluster machines' addresses (IPv4), the
    only mesh sources allowed to reach `machine_only_ports`. container_ports: the ports of
    this machine a container may open (TCP). machine_only_ports: what only machines reach."""

    mesh_cidr: str
    machines: tuple[str, ...] = ()
    container_ports: tuple[int, ...] = ()
    machine_only_ports: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        ipaddress.ip_network(self.mesh_cidr)
        for addr in self.machines:
            if ipaddress.ip_address(addr).version != 4:
                raise ValueError(f"machine address {addr!r}: the fence takes IPv4 addresses")
        for port in (*self.container_ports, *self.machine_only_ports):
            if not 0 < int(port) < 65536:
                raise ValueError(f"port {port!r} is not a TCP port")

    @classmethod
    def build(cls, mesh_cidr: str, machines=(), container_ports=(), machine_only_ports=()) -> Fence:
        """From ordinary iterables (order and repeats do not matter)."""
        return cls(mesh_cidr, tuple(sorted(set(machines), key=ipaddress.ip_address)),
                   tuple(sorted(set(container_ports))), tuple(sorted(set(machine_only_ports))))


def _set(items) -> str:
    return "{ " + ", ".join(str(i) for i in items) + " }"


def render(fence: Fence) -> str:
    """The nft script that replaces the fence table with `fence`, as one transaction."""
    c = f'iifname "{CONTAINER_IFACES}"'
    machines = f"\t\telements = {_set(fence.machines)}\n" if fence.machines else ""
    input_rules = [
        f"{c} ct state established,related accept",
        f"{c} udp dport {DNS_PORT} accept",
        f"{c} tcp dport {DNS_PORT} accept",
    ]
    if fence.container_ports:
        input_rules.append(f"{c} tcp dport {_set(fence.container_ports)} accept")
    input_rules += [f"{c} meta l4proto tcp reject with tcp reset",
                    f"{c} reject with icmpx type admin-prohibited"]
    if fence.machines and fence.machine_only_ports:
        input_rules.append(f"ip saddr {fence.mesh_cidr} ip saddr != @machines "
                           f"tcp dport {_set(fence.machine_only_ports)} reject with tcp reset")
    forward_rules = [
        f"{c} ct state established,related accept",
        f"{c} ip daddr {fence.mesh_cidr} meta l4proto tcp reject with tcp reset",
        f"{c} ip daddr {fence.mesh_cidr} reject with icmpx type admin-prohibited",
        f"{c} ip daddr @machines meta l4proto tcp reject with tcp reset",
        f"{c} ip daddr @machines reject with icmpx type admin-prohibited",
    ]
    body = "".join(f"\t\t{r}\n" for r in input_rules)
    fwd = "".join(f"\t\t{r}\n" for r in forward_rules)
    return (
        f"table inet {TABLE}\n"
        f"delete table inet {TABLE}\n"
        f"table inet {TABLE} {{\n"
        f"\tset machines {{\n\t\ttype ipv4_addr\n{machines}\t}}\n"
        f"\tchain input {{\n\t\ttype filter hook input priority {PRIORITY}; policy accept;\n{body}\t}}\n"
        f"\tchain forward {{\n\t\ttype filter hook forward priority {PRIORITY}; policy accept;\n{fwd}\t}}\n"
        f"}}\n"
    )


def present(shell: Shell) -> bool:
    """Whether the fence table exists in this network namespace (someone may flush nft)."""
    return shell.run(["nft", "list", "table", "inet", TABLE]).returncode == 0


def apply(shell: Shell, fence: Fence) -> None:
    """Load `fence`, replacing any earlier one atomically."""
    with tempfile.NamedTemporaryFile("w", prefix="vcapp-fence-", suffix=".nft") as f:
        f.write(render(fence))
        f.flush()
        proc = shell.run(["nft", "-f", f.name])
    if proc.returncode != 0:
        raise FenceError(f"cannot load the control-plane fence: {proc.stderr.strip()}; "
                         "the node daemon must run as root with nftables installed")

