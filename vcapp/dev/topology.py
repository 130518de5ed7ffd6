"""The shape of a simulated cluster: which hosts exist, their namespaces and addresses.

Pure data, no I/O. Every address lives only inside the cluster's own network namespaces:
documentation ranges stand for the public internet, private ranges for the site LANs.

    client 203.0.113.100 ─┐                         ┌─ home-1 10.1.0.11
    edge   203.0.113.10  ─┼─ bb0 (the "internet") ─┬┴ home router  203.0.113.21 / 10.1.0.1 (NAT)
                          │                        │  └─ home-2 10.1.0.12
                          │                        └─ office router 203.0.113.22 / 10.2.0.1 (NAT)
                          │                           └─ office-1 10.2.0.11
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

BACKBONE_PREFIX = 24
EDGE_ADDR = "203.0.113.10"
CLIENT_ADDR = "203.0.113.100"
# Router WAN addresses start here (site i gets .21+i); LANs are 10.<i+1>.0.0/24.
ROUTER_WAN_BASE = 21
MACHINE_HOST_BASE = 11
# Linux interface names are at most 15 bytes: "m-" + site + "-" + number must fit.
MAX_SITE_NAME = 8
MAX_MACHINES = 12
MAX_SITES = 9

NAT_MODES = {
    "easy": "endpoint-independent mapping (MASQUERADE): ordinary home routers",
    "hard": "port-randomizing NAT (MASQUERADE --random-fully): hole punching fails",
    "udp-blocked": "outbound UDP dropped: only TCP gets out (strict office firewall)",
}


class TopologyError(ValueError):
    """A topology request that cannot be built; the message says what to change."""


@dataclass(frozen=True)
class Site:
    name: str
    index: int
    machines: int
    nat: str = "easy"

    @property
    def wan_addr(self) -> str:
        return f"203.0.113.{ROUTER_WAN_BASE + self.index}"

    @property
    def lan(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.{self.index + 1}.0.0/24")

    @property
    def gateway(self) -> str:
        return str(self.lan.network_address + 1)

    def machine_addr(self, number: int) -> str:
        return str(self.lan.network_address + MACHINE_HOST_BASE + number - 1)


@dataclass(frozen=True)
class Host:
    """One simulated box. role: backbone | router | edge | client | machine."""

    name: str
    role: str
    addr: str | None = None
    site: str | None = None
    gateway: str | None = None

    @property
    def runs_processes(self) -> bool:
        """Routers and the backbone only forward packets; the others boot and run programs."""
        return self.role in ("edge", "client", "machine")


@dataclass(frozen=True)
class Topology:
    cluster: str
    sites: tuple[Site, ...] = field(default_factory=tuple)

    def ns(self, host: str) -> str:
        """The network namespace name of a host: vc-<cluster>-<host>."""
        return f"vc-{self.cluster}-{host}"

    @property
    def ns_prefix(self) -> str:
        return f"vc-{self.cluster}-"

    def site(self, name: str) -> Site:
        for site in self.sites:
            if site.name == name:
                return site
        raise TopologyError(f"no site {name!r}; sites are {', '.join(s.name for s in self.sites)}")

    def hosts(self) -> list[Host]:
        hosts = [
            Host("net", "backbone"),
            Host("edge", "edge", EDGE_ADDR),
            Host("client", "client", CLIENT_ADDR),
        ]
        for site in self.sites:
            hosts.append(Host(site.name, "router", site.wan_addr, site.name))
            for n in range(1, site.machines + 1):
                hosts.append(
                    Host(f"{site.name}-{n}", "machine", site.machine_addr(n), site.name, site.gateway)
                )
        return hosts

    def host(self, name: str) -> Host:
        for host in self.hosts():
            if host.name == name:
                return host
        names = ", ".join(h.name for h in self.hosts() if h.runs_processes)
        raise TopologyError(f"no host {name!r} in cluster {self.cluster!r}; hosts are {names}")

    def machines(self) -> list[Host]:
        return [h for h in self.hosts() if h.role == "machine"]

    def to_dict(self) -> dict:
        return {
            "cluster": self.cluster,
            "sites": [{"name": s.name, "machines": s.machines, "nat": s.nat} for s in self.sites],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Topology:
        return build(data["cluster"], [(s["name"], s["machines"], s["nat"]) for s in data["sites"]])


def build(cluster: str, sites: list[tuple[str, int, str]]) -> Topology:
    """Validate a request (cluster name, [(site, machines, nat mode)]) into a Topology."""
    if not cluster or not cluster.isalnum() or not cluster[0].isalpha() or len(cluster) > 12:
        raise TopologyError(
            f"cluster name {cluster!r}: use 1-12 letters and digits, starting with a letter"
        )
    if not sites or len(sites) > MAX_SITES:
        raise TopologyError(f"a cluster needs 1 to {MAX_SITES} sites, not {len(sites)}")
    names = [name for name, _, _ in sites]
    if len(set(names)) != len(names):
        raise TopologyError(f"site names must differ: {', '.join(names)}")
    total = sum(count for _, count, _ in sites)
    if total < 1 or total > MAX_MACHINES:
        raise TopologyError(f"a simulated cluster has 1 to {MAX_MACHINES} machines, not {total}")
    built = []
    for index, (name, count, nat) in enumerate(sites):
        if not name.isalpha() or not name.islower() or len(name) > MAX_SITE_NAME:
            raise TopologyError(f"site name {name!r}: use 1-{MAX_SITE_NAME} lowercase letters")
        if name in ("net", "edge", "client"):
            raise TopologyError(f"site name {name!r} is taken by a backbone host")
        if count < 0:
            raise TopologyError(f"site {name}: machine count cannot be negative")
        if nat not in NAT_MODES:
            raise TopologyError(f"site {name}: NAT mode {nat!r} unknown; use one of {', '.join(NAT_MODES)}")
        built.append(Site(name, index, count, nat))
    return Topology(cluster, tuple(built))


def default(cluster: str = "dev", home: int = 2, office: int = 1, office_nat: str = "easy") -> Topology:
    """The standard picture: a home site and an office site behind their own NAT routers."""
    return build(cluster, [("home", home, "easy"), ("office", office, office_nat)])
