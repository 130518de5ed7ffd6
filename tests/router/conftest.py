"""Fixtures for router tests: an edge and node routers on a simulated cluster.

Until the WireGuard mesh lands, the edge cannot reach machines behind NAT. `stand_in_mesh`
gives it a direct path to the home LAN instead (a route on the edge via the home router and
one FORWARD rule on that router accepting the edge's traffic): the node addresses the edge
dials are then LAN addresses, where later they will be mesh addresses. Nothing else of the
topology changes, and the rules go when the module ends.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from router.edge import Edge
from router.node import NodeRouter
from router.routes import AppRoute, EdgeRoutes, NodeRoutes
from router.tokens import TokenRecord
from tests.conftest import Sim
from vcapp.dev.rigs import waiting
from vcapp.dev import netns
from vcapp.dev.cluster import DevCluster
from vcapp.dev.topology import default

WEBAPP = str(Path(__file__).resolve().parent / "webapp.py")
DOMAIN = "apps.example.com"
NODE_PORT = 7080
APP_PORT = 9001
HTTPS_PORT = 443
# A python web app starts in well under a second; 10 s means it failed.
APP_START_TIMEOUT = 10.0
# A new edge's first certificate from the internal CA: milliseconds; 5 s means it failed.
CERT_WAIT = 5.0
SESSION_KEY = b"k" * 32


def launcher_on(sim, host: str):
    """A CaddyProcess launcher that starts caddy on a simulated host."""
    return lambda argv, log: sim.spawn(host, *argv, log=log)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05, detail=None):
    return waiting.wait_for(predicate, timeout, what, interval, detail)


@dataclass
class Tokens:
    """The token store the test controls; the auth services look records up here."""

    records: dict[str, TokenRecord] = field(default_factory=dict)
    lookups: int = 0

    def lookup(self, token_hash: str) -> TokenRecord | None:
        self.lookups += 1
        return self.records.get(token_hash)


@pytest.fixture(scope="module")
def sim():
    """Like the suite's `sim`, but named rtXXXX: the suite's session fixture removes every
    cluster named tXXXX when any pytest run starts, which would pull a router cluster out
    from under these tests whenever another engineer starts a run at the same time."""
    if os.geteuid() != 0:
        pytest.fail("router cluster tests create network namespaces: run them as root")
    dc = DevCluster("rt" + secrets.token_hex(2))
    try:
        dc.up(default(dc.name))
        yield Sim(dc)
    finally:
        dc.down()


@contextlib.contextmanager
def path_to_home_lan(sim, host: str):
    """Stand-in for the mesh: `host` (on the backbone) may open TCP connections to the home LAN."""
    lan, home = "10.1.0.0/24", sim.topology.ns("home")
    sim.run(host, "ip", "route", "replace", lan, "via", sim.addr("home"))
    rule = ["FORWARD", "-i", "wan", "-o", "br-lan", "-s", sim.addr(host), "-p", "tcp", "-j", "ACCEPT"]
    netns.iptables(home, "-I", rule[0], "1", *rule[1:])
    try:
        yield
    finally:
        netns.iptables(home, "-D", *rule, check=False)
        sim.run(host, "ip", "route", "del", lan, check=False)


@pytest.fixture(scope="module")
def stand_in_mesh(sim):
    with path_to_home_lan(sim, "edge"):
        yield


def start_webapp(sim, host: str, name: str, port: int = APP_PORT) -> subprocess.Popen:
    proc = sim.dc.spawn(host, [sys.executable, WEBAPP, str(port), name], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready", f"web app {name} did not start on {host}"
    return proc


@dataclass
class Stack:
    """An edge, node routers on home-1 and home-2, the routes tables, the CA file."""

    sim: object
    edge: Edge
    nodes: dict[str, NodeRouter]
    tokens: Tokens
    ca_file: Path
    apps: dict[str, AppRoute] = field(default_factory=dict)
    domains: dict[str, list[str]] = field(default_factory=dict)
    api: list[str] = field(default_factory=list)
    node_routes: dict[str, NodeRoutes] = field(default_factory=dict)  # what each router was last given

    def node_addr(self, host: str) -> str:
        return f"{self.sim.addr(host)}:{NODE_PORT}"

    def publish(self, live: list[str] | None = None, placed: bool = False, settle: bool = True) -> bool:
        """Push the current apps to every node router and the edge (nodes: `live` hosts), and
        unless `settle` is false, wait until the routers' new answers are in force (as the
        cluster's route switch does before it retires an instance).
        placed: each router knows its own machine's instances, and the edge which routers run
        each app, as in the cluster (otherwise every router takes every app). True when the
        edge loaded a new config."""
        live = live if live is not None else list(self.nodes)
        apps = {name: replace(app, domains=tuple(self.domains.get(name, ()))) for name, app in self.apps.items()}
        for host in live:
            mine = {name: replace(app, local=tuple(b for b in app.backends if b.startswith(f"{self.sim.addr(host)}:")))
                    for name, app in apps.items()} if placed else apps
            self.node_routes[host] = NodeRoutes.build(
                DOMAIN, mine, self.api, trusted_proxies=[f"{self.sim.addr(e)}/32" for e in ("edge", "client")])
            self.nodes[host].update(self.node_routes[host])
        loaded = self.edge.update(self.edge_routes(live, placed))
        while settle and not all(self.nodes[host].settled() for host in live):
            time.sleep(0.05)
        return loaded

    def edge_routes(self, live: list[str] | None = None, placed: bool = False,
                    where: dict[str, list[str]] | None = None) -> EdgeRoutes:
        """placed: each app to the routers of the hosts its backends are on, as the cluster
        tells the edge; `where`: app -> routers, said outright."""
        live = live if live is not None else list(self.nodes)
        if placed and where is None:
            where = {name: [self.node_addr(h) for h in live
                            if any(b.startswith(f"{self.sim.addr(h)}:") for b in app.backends)]
                     for name, app in self.apps.items()}
        return EdgeRoutes.build(DOMAIN, list(self.apps), [self.node_addr(h) for h in live], self.domains, where)

    def curl(self, host: str, path: str = "/", *args: str, timeout: float = 10):
        """curl https://host/path from the client, resolved to the edge, trusting the dev CA."""
        return self.sim.fetch(f"https://{host}{path}", "--cacert", str(self.ca_file),
                              "--resolve", f"{host}:{HTTPS_PORT}:{self.sim.addr('edge')}", *args,
                              timeout=timeout)


@pytest.fixture(scope="module")
def stack(sim, stand_in_mesh, tmp_path_factory):
    work = tmp_path_factory.mktemp("router")
    tokens = Tokens()
    nodes = {h: NodeRouter(work / h, f"{sim.addr(h)}:{NODE_PORT}", tokens.lookup, SESSION_KEY,
                           launcher=launcher_on(sim, h)) for h in ("home-1", "home-2")}
    edge = Edge(work / "edge", https_port=HTTPS_PORT, dev=True, launcher=launcher_on(sim, "edge"))
    apps = [start_webapp(sim, h, "blog") for h in ("home-1", "home-2")]
    started = []
    try:
        for part in (*nodes.values(), edge):
            part.start()
            started.append(part)
        s = Stack(sim, edge, nodes, tokens, work / "root.crt")
        s.apps["blog"] = AppRoute((f"{sim.addr('home-1')}:{APP_PORT}",), "public")
        s.publish()
        s.ca_file.write_text(edge.root_ca_pem())
        # The edge issues its wildcard certificate in the background after its first load
        # (milliseconds); until then every TLS handshake fails, with no HTTP status at all.
        wait_for(lambda: s.curl(f"blog.{DOMAIN}", "/", "-o", "/dev/null", "-w", "%{http_code}").stdout != "000",
                 CERT_WAIT, "the edge's first certificate",
                 detail=lambda: s.curl(f"blog.{DOMAIN}", "/", "-o", "/dev/null").stderr + edge.caddy.log.read_text()[-3000:])
        yield s
    finally:
        for part in started:
            part.stop()
        for proc in apps:
            proc.kill()
