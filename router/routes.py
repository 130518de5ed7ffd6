"""The routes tables the router layers are driven from: plain data, no I/O.

The control plane builds these from cluster state (which apps exist, where their instances
run, which nodes are alive) and hands them to a ConfigSync (config_sync.py), which turns them into
Caddy JSON. Both tables are frozen values, so "did anything change" is an equality test.

    EdgeRoutes   domain, apps (names), nodes (node-router addresses), custom domains,
                 placed (app -> the routers running it), down (routers)
    NodeRoutes   domain, apps: name -> AppRoute(backends, policy, domains, local,
                 down, down_detail, retiring),
                 api backends, trusted proxies (the edges), machines (hop clients), down machines
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

POLICIES = ("public", "token")
# Why an app has no backend, for the page its visitors get (router/node_config.py):
# never deployed; its first push is building; its last build failed (never deployed);
# scaled to 0; no machine has room (the placer's reason); its instances crashed; failing
# their health check. None: no reason known (just deployed, its machine just died).
DOWN_REASONS = ("undeployed", "deploying", "build-failed", "stopped", "no-room", "crashed", "unhealthy")
MAX_DOWN_DETAIL = 300  # characters: one sentence on a public page
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_HOSTNAME = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]*[a-z0-9]$")
API_LABEL = "api"


class RoutesError(ValueError):
    """A routes table that cannot be served; the message says which entry and why."""


def check_domain(domain: str) -> None:
    if not _HOSTNAME.fullmatch(domain):
        raise RoutesError(f"domain {domain!r} is not a DNS name like apps.example.com")


def check_app(name: str) -> None:
    if not _LABEL.fullmatch(name):
        raise RoutesError(f"app name {name!r}: use lowercase letters, digits and '-' (a DNS label)")
    if name == API_LABEL:
        raise RoutesError(f"app name {name!r} is taken by the cluster API hostname")


def check_address(addr: str) -> None:
    """host:port (IPv4 or a name), or unix//path."""
    if addr.startswith("unix//"):
        return
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RoutesError(f"address {addr!r}: write it as host:port")


def check_instance(addr: str) -> None:
    """IPv4:port: where a node router dials an app (a container's port on this machine's
    loopback, another machine's hop server); a router's answers carry addresses only."""
    host, _, port = addr.rpartition(":")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise RoutesError(f"backend {addr!r}: write it as an IPv4 address and port, like 127.0.0.1:20001") from None
    check_address(addr)


def app_host(app: str, domain: str) -> str:
    return f"{app}.{domain}"


def api_host(domain: str) -> str:
    return f"{API_LABEL}.{domain}"


@dataclass(frozen=True)
class EdgeRoutes:
    """What an edge needs: every public hostname, and the node routers to send them to.

    nodes: "addr:port" of every machine's node router (mesh addresses in production).
    domains: app -> extra hostnames (custom domains) served like the app's own.
    placed: app -> the routers of the machines running it (an app not named: any router).
    down: the routers of the machines the cluster sees dead or unreachable.
    Only domain, nodes and the custom domains make the edge's Caddy config; the apps, where
    they run and which routers are down only change the edge's answers (router/edge_dns.py)."""

    domain: str
    apps: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    domains: tuple[tuple[str, tuple[str, ...]], ...] = ()
    placed: tuple[tuple[str, tuple[str, ...]], ...] = ()
    down: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_domain(self.domain)
        for app in self.apps:
            check_app(app)
        for node in self.nodes:
            check_address(node)
        for app, hosts in self.domains:
            if app not in self.apps:
                raise RoutesError(f"custom domain for unknown app {app!r}; add the app first")
            for host in hosts:
                check_domain(host)
        for app, routers in self.placed:
            if app not in self.apps:
                raise RoutesError(f"placement of unknown app {app!r}; add the app first")
            for router in routers:
                check_address(router)
        for router in self.down:
            check_address(router)

    def hostnames(self) -> list[str]:
        """Every hostname this edge answers for, sorted: api, apps, custom domains."""
        names = {api_host(self.domain)} | {app_host(a, self.domain) for a in self.apps}
        names |= {h for _, hosts in self.domains for h in hosts}
        return sorted(names)

    @classmethod
    def build(cls, domain: str, apps: list[str] | tuple[str, ...] = (), nodes: list[str] | tuple[str, ...] = (),
              domains: dict[str, list[str]] | None = None, placed: dict[str, list[str]] | None = None,
              down: list[str] | tuple[str, ...] = ()) -> EdgeRoutes:
        """From ordinary lists and dicts (order does not matter)."""
        return cls(domain, tuple(sorted(set(apps))), tuple(sorted(set(nodes))),
                   tuple(sorted((a, tuple(sorted(set(h)))) for a, h in (domains or {}).items())),
                   tuple(sorted((a, tuple(sorted(set(r)))) for a, r in (placed or {}).items() if r)),
                   tuple(sorted(set(down))))


@dataclass(frozen=True)
class AppRoute:
    """One app as a node router sees it.

    backends: "IPv4:port" of where the app is served: its serving (running, healthy)
    instances on this machine (containers' ports, published on loopback) and the hop ports
    of the other machines' routers that run one.
    local: the backends on this node's own machine, preferred over the others.
    retiring: containers of the app leaving this machine ("127.0.0.1:port"): no longer
    backends here, but its hop server still serves them to the routers that have not
    switched yet (vcapp/state/routeswitch.py).
    down: why there is no backend (one of DOWN_REASONS, None: not known), down_detail: the
    specifics a visitor or admin can act on (a pending reason, the command to run)."""

    backends: tuple[str, ...] = ()
    policy: str = "public"
    domains: tuple[str, ...] = ()
    local: tuple[str, ...] = ()
    down: str | None = None
    down_detail: str = ""
    retiring: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise RoutesError(f"access policy {self.policy!r}: use one of {', '.join(POLICIES)}")
        for backend in self.backends + self.retiring:
            check_instance(backend)
        for host in self.domains:
            check_domain(host)
        if not set(self.local) <= set(self.backends):
            raise RoutesError(f"local backends {sorted(set(self.local) - set(self.backends))} are not backends")
        if self.down is not None and self.down not in DOWN_REASONS:
            raise RoutesError(f"down reason {self.down!r}: use one of {', '.join(DOWN_REASONS)}")
        if len(self.down_detail) > MAX_DOWN_DETAIL:
            raise RoutesError(f"down detail is {len(self.down_detail)} characters; at most {MAX_DOWN_DETAIL}")


@dataclass(frozen=True)
class NodeRoutes:
    """What one node's router needs.

    api: "addr:port" of the admin API / git server instances reachable from this node.
    trusted_proxies: CIDRs of the edges, whose X-Forwarded-* headers are believed.
    machines: addresses of the cluster's machines, up or down, whose routers may use this
    router's hop server (the local instances of each app, already past the access check of
    the router that sends them). down: those of them the cluster sees dead or unreachable:
    this router cuts its connections to them (router/cutoff.py)."""

    domain: str
    apps: tuple[tuple[str, AppRoute], ...] = ()
    api: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    machines: tuple[str, ...] = ()
    down: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_domain(self.domain)
        for name, _ in self.apps:
            check_app(name)
        for backend in self.api:
            check_address(backend)

    @classmethod
    def build(cls, domain: str, apps: dict[str, AppRoute] | None = None, api: list[str] | tuple[str, ...] = (),
              trusted_proxies: list[str] | tuple[str, ...] = (),
              machines: list[str] | tuple[str, ...] = (), down: list[str] | tuple[str, ...] = ()) -> NodeRoutes:
        """From ordinary lists and dicts (order does not matter)."""
        return cls(domain, tuple(sorted((apps or {}).items())), tuple(sorted(set(api))),
                   tuple(sorted(set(trusted_proxies))), tuple(sorted(set(machines))), tuple(sorted(set(down))))
