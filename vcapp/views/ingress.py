"""Ingress routes from cluster state: which app instances a node router sends requests to.

The pure part turns a `ClusterView` (app specs, runtime reports, live machines, the edges)
into the router layer's tables, `NodeRoutes` for every node router and `EdgeRoutes` for an
edge; `read_view` is the only function here that reads etcd. An app's backends are its
`web` instances the runtime reports running and healthy, on machines that are alive and
reachable (vcapp/state/peerwatch.py; a worker, clock, ... gets no HTTP traffic):

    /vc/apps/<app>                  {policy: "public"|"token", domains: [...], health: {...}}
    /vc/status/<node>/<app>/<inst>  {state: "running", health: "healthy", host_port: 20001, process: "web"}
    /vc/nodes/<node>                {addr: ...}
    /vc/pending/<app>, /vc/builds/<app>/<n>  why an app with no backend is down (`down_reason`)

Containers publish their port on their machine's loopback only (runtime/podman.py), so a
node router reaches the instances on its own machine at "127.0.0.1:<host_port>" and an app's
instances elsewhere through that machine's router, on its hop port ("<addr>:NODE_HOP_PORT",
which serves only machines and only the instances on its own machine). The only way into a
container from outside its machine is a node router, which enforces the app's access policy.

Node addresses are the machines' cluster addresses (the mesh address once the mesh carries
cluster traffic); nothing here cares which.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from placer.model import process_of
from router.routes import (MAX_DOWN_DETAIL, AppRoute, EdgeRoutes, NodeRoutes, RoutesError, api_host, check_app,
                           check_domain)
from vcapp.state import builds, instances, keys, membership, peerwatch
from vcapp.state.store import Store

log = logging.getLogger("vcapp.ingress")

NODE_ROUTER_PORT = 7080
# Router to router: the instances of an app on the machine whose router listens here, for the
# other machines' routers (never the edges, never containers: runtime/firewall.py).
NODE_HOP_PORT = 7081
# Where a machine's containers publish their ports (runtime/podman.py publish_ip).
LOCAL_ADDR = "127.0.0.1"
# The edge's address on the mesh (mesh/edge.py EDGE_MESH_IP): requests from it carry the
# real client address in X-Forwarded-For, which the node router then believes.
EDGE_MESH_IP = "100.96.0.1"
SERVING_STATES = ("running",)
# "-": the app has no health check, so running is all the runtime can say.
SERVING_HEALTH = ("healthy", "-")


@dataclass(frozen=True)
class ClusterView:
    """What ingress needs from the store, as plain data.

    apps: name -> spec; reports: runtime status values; nodes: live machine -> address;
    api: live machine -> "addr:port" of its admin API; edges: addresses of the edges;
    pending: app -> its /vc/pending record; builds: app -> its newest build record, for the
    apps never deployed (vcapp/state/builds.py): both only say why an app is down.
    members: every machine of the cluster, live or not -> address (None: the live ones)."""

    domain: str
    apps: dict[str, dict] = field(default_factory=dict)
    reports: list[dict] = field(default_factory=list)
    nodes: dict[str, str] = field(default_factory=dict)
    api: dict[str, str] = field(default_factory=dict)
    edges: tuple[str, ...] = ()
    pending: dict[str, dict] = field(default_factory=dict)
    builds: dict[str, dict] = field(default_factory=dict)
    members: dict[str, str] | None = None


def serving(report: dict) -> bool:
    """A running, healthy `web` instance with a published port (other process types get no HTTP)."""
    return (report.get("process", "web") == "web" and report.get("state") in SERVING_STATES and report.get("health", "-") in SERVING_HEALTH
            and bool(report.get("host_port")))


def local_backends(app: str, reports: list[dict], nodes: dict[str, str], on: str) -> tuple[str, ...]:
    """"127.0.0.1:host_port" of every serving instance of `app` on machine `on` (if it is
    alive), sorted: what `on`'s router dials itself."""
    found = {f"{LOCAL_ADDR}:{int(r['host_port'])}" for r in reports
             if r.get("app") == app and r.get("node") == on and on in nodes and serving(r)}
    return tuple(sorted(found))


def serving_machines(app: str, reports: list[dict], nodes: dict[str, str], besides: str | None = None) -> set[str]:
    """The addresses of the live machines other than `besides` with a serving instance of `app`."""
    return {nodes[r["node"]] for r in reports
            if r.get("app") == app and r.get("node") in nodes and r["node"] != besides and serving(r)}


def peer_routers(app: str, reports: list[dict], nodes: dict[str, str], besides: str | None = None) -> tuple[str, ...]:
    """"addr:NODE_HOP_PORT" of every live machine other than `besides` with a serving
    instance of `app`, sorted: where a router sends the requests it does not serve itself."""
    return tuple(sorted(f"{addr}:{NODE_HOP_PORT}" for addr in serving_machines(app, reports, nodes, besides)))


def valid_domains(app: str, spec: dict) -> tuple[str, ...]:
    good = []
    for host in spec.get("domains") or ():
        try:
            check_domain(host)
            good.append(host)
        except RoutesError as e:
            log.warning("app %s: custom domain skipped: %s", app, e)
    return tuple(sorted(set(good)))


def app_route(name: str, spec: dict, view: ClusterView, node: str | None = None,
              retiring: tuple[int, ...] = ()) -> AppRoute:
    """`name`'s route as `node`'s router sees it (None: without local instances); `retiring`:
    host ports of its containers leaving `node` (vcapp/state/routeswitch.py)."""
    policy = spec.get("policy") or "public"
    local = local_backends(name, view.reports, view.nodes, node) if node else ()
    backends = local + peer_routers(name, view.reports, view.nodes, node)
    down, detail = (None, "") if backends else down_reason(name, spec, view)
    leaving = tuple(b for port in retiring if (b := f"{LOCAL_ADDR}:{port}") not in local) if node else ()
    return AppRoute(backends, policy, valid_domains(name, spec), local, down,
                    short(detail), leaving)


def down_reason(name: str, spec: dict, view: ClusterView) -> tuple[str | None, str]:
    """Why `name` has no serving instance (router/routes.py DOWN_REASONS) and what to do,
    from what the cluster records; (None, "") when nothing says (it is starting, or its
    machine just died). Only stable words: a change rewrites the page on every router. The page
    is public, so the words name the admin command that tells more, never the error itself (a
    config parse error, a health check's answer, machines' free memory)."""
    if not spec.get("image"):
        build = view.builds.get(name) or {}
        if build.get("result") in (builds.FAILED, builds.REFUSED):
            return "build-failed", (f"Build {build.get('number')} ({str(build.get('sha') or '')[:7]}) "
                                    f"{build['result']}; its log: vcapp builds log {name}")
        if build.get("result") == builds.BUILDING:
            return "deploying", ""
        return "undeployed", f"To deploy it, push its code: git push {git_url(view.domain, name)} main"
    if int(spec.get("count", 1) or 0) == 0:
        return "stopped", f"To start it: vcapp scale {name} --count 1"
    waiting = {inst: why for inst, why in ((view.pending.get(name) or {}).get("instances") or {}).items()
               if process_of(inst)[0] == "web"}
    if waiting:
        return "no-room", f"`vcapp ps {name}` says what it needs"
    live = [r for r in view.reports if r.get("app") == name and r.get("node") in view.nodes
            and r.get("process", "web") == "web"]
    for r in sorted(live, key=lambda r: str(r.get("instance"))):
        if r.get("state") in ("failed", "exited"):
            return "crashed", f"`vcapp ps {name}` and `vcapp logs {name}` say why"
    for r in sorted(live, key=lambda r: str(r.get("instance"))):
        if r.get("health") == "unhealthy":
            return "unhealthy", f"`vcapp ps {name}` shows the check's answer"
    return None, ""


def git_url(domain: str, app: str) -> str:
    """Where an admin pushes `app` (the API hostname at the edge, vcapp/api/git.py)."""
    return f"https://{api_host(domain)}/git/{app}.git"


def short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DOWN_DETAIL else text[:MAX_DOWN_DETAIL - 1] + "…"


def routable_apps(view: ClusterView, node: str | None = None,
                  retiring: dict[str, tuple[int, ...]] | None = None) -> dict[str, AppRoute]:
    """Every app the routers can serve; an app whose name or policy cannot be is skipped, logged."""
    routes = {}
    for name, spec in sorted(view.apps.items()):
        try:
            check_app(name)
            routes[name] = app_route(name, spec or {}, view, node, (retiring or {}).get(name, ()))
        except RoutesError as e:
            log.warning("app %s not routed: %s", name, e)
    return routes


def trusted_proxies(edges: tuple[str, ...]) -> list[str]:
    """CIDRs of the edges (only IP addresses can be trusted; names are skipped)."""
    out = []
    for edge in edges:
        try:
            out.append(str(ipaddress.ip_network(edge)))
        except ValueError:
            continue
    return out


def node_routes(view: ClusterView, node: str | None = None,
                retiring: dict[str, tuple[int, ...]] | None = None) -> NodeRoutes:
    """The table of `node`'s router: every app's instances (its own preferred). None: a router
    without a machine of its own. `retiring`: app -> host ports of its containers leaving
    `node`, which only its hop server still serves."""
    apps = routable_apps(view, node, retiring)
    members = view.nodes if view.members is None else view.members
    live = set(view.nodes.values())
    return NodeRoutes.build(view.domain, apps, list(view.api.values()), trusted_proxies(view.edges),
                            machines=[*members.values(), *live], down=[a for a in members.values() if a not in live])


def edge_routes(view: ClusterView, node_routers: list[str], down: list[str] | tuple[str, ...] = ()) -> EdgeRoutes:
    """An edge's table: every app hostname and custom domain, sent to `node_routers`; each
    app's requests to the routers of the live machines with a serving instance of it."""
    apps = routable_apps(view)
    domains = {name: list(route.domains) for name, route in apps.items() if route.domains}
    placed = {name: [f"{addr}:{NODE_ROUTER_PORT}" for addr in serving_machines(name, view.reports, view.nodes)]
              for name in apps}
    return EdgeRoutes.build(view.domain, list(apps), node_routers, domains, placed, down)


# ---- reading the store ------------------------------------------------------------------

def edge_hosts(cluster: dict) -> tuple[str, ...]:
    """The edges a node router trusts: the mesh edge, and the edge named at `cluster init`."""
    host = urlsplit("//" + str(cluster.get("edge") or "")).hostname
    return tuple(sorted({EDGE_MESH_IP, *([host] if host else [])}))


def read_view(store: Store) -> ClusterView:
    """The current ClusterView: five prefix reads, and one more for each app never deployed,
    cheap enough for every reconcile tick."""
    cluster = store.value(keys.CLUSTER) or {}
    alive = peerwatch.reachable(store)  # no route to a machine nobody reaches
    records = membership.node_records(store)
    live = {n: r for n, r in records.items() if n in alive and r.get("addr")}
    apps = {keys.name_of(e.key, keys.APPS): e.value for e in store.list(keys.APPS) if isinstance(e.value, dict)}
    reports = instances.reports(store)
    api = {n: a for n, r in live.items() if (a := membership.api_addr(r))}
    pending = {keys.name_of(e.key, keys.PENDING): e.value for e in store.list(keys.PENDING)
               if isinstance(e.value, dict)}
    last_builds = {name: b for name, spec in apps.items() if not spec.get("image")
                   if (b := builds.latest(store, name))}
    return ClusterView(cluster.get("domain", ""), apps, reports, {n: r["addr"] for n, r in live.items()},
                       api, edge_hosts(cluster), pending, last_builds,
                       {n: r["addr"] for n, r in records.items() if r.get("addr")})
