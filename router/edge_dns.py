"""Where an edge sends each hostname, told to its Caddy as DNS answers (router/answers.py).

The edge's Caddy config names no app (router/edge_config.py): a request for an app's
hostname H goes to the node routers that a lookup of "H.ZONE" answers (Caddy's dynamic `a`
upstreams, cached REFRESH), from the table `answers` makes of the edge's routes.

    answers(routes) -> {"hosts": {hostname: [ip, ...]}, "default": [ip, ...]}     pure

An app's hostnames (its own and its custom domains) get the routers of the machines running
it that are not down; an app running nowhere, an unknown name, or an app whose routers are all
down gets `default`: every router not down (each one forwards, or answers the app's "not
running" page).
"""

from __future__ import annotations

import ipaddress

from router.answers import ZONE
from router.routes import EdgeRoutes, app_host


def lookup_name() -> str:
    """The name Caddy looks up for a request (its Host, absolute: no search domains)."""
    return f"{{http.request.host}}.{ZONE}."


def router_port(nodes: tuple[str, ...]) -> int | None:
    """The one port every node router listens on (an answer carries addresses only); None
    when they differ or one is not host:port (then the edge sends to any router)."""
    ports = {n.rpartition(":")[2] for n in nodes}
    if len(ports) != 1 or any(n.startswith("unix/") for n in nodes):
        return None
    port = ports.pop()
    return int(port) if port.isdigit() else None


def _ips(routers: list[str] | tuple[str, ...]) -> list[str]:
    out = []
    for r in routers:
        try:
            out.append(str(ipaddress.IPv4Address(r.rpartition(":")[0])))
        except ValueError:
            continue  # a name: Caddy dials it from the config's static list instead
    return sorted(set(out))


def answers(routes: EdgeRoutes) -> dict:
    """Each served hostname's routers (see the module's docstring)."""
    down = set(routes.down)
    up = [n for n in routes.nodes if n not in down] or list(routes.nodes)
    default = _ips(up)
    custom = dict(routes.domains)
    hosts: dict[str, list[str]] = {}
    for app, routers in routes.placed:
        running = _ips([r for r in routers if r not in down])
        if running:
            for host in (app_host(app, routes.domain), *custom.get(app, ())):
                hosts[host] = running
    return {"hosts": hosts, "default": default}
