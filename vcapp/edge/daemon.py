"""`vcapp edge run`: the public entry of a cluster. One Caddy (router/edge.py) serves `*.D`,
`api.D` and the apps' custom domains, and hands every request to a live machine's node
router, which knows where each app runs.

What it serves comes from the cluster itself: every EDGE_POLL the edge asks the admin API,
through any node router it knows (Host: api.D), for GET /v1/ingress — the app names, their
custom domains and the live machines' node-router addresses. The node routers it starts
from are the `--node` addresses and, when this host runs the mesh coordination server, every
machine in its registry (mesh/registry.py) at <mesh ip>:7080.
The table names, among them, the routers of machines the cluster sees down (`down`), and the
edge probes every router itself twice a second as the machines probe each other
(vcapp/state/peerwatch.py); when a router falls (either says so) the edge cuts its open
connections to it (router/cutoff.py), so requests in flight there are retried elsewhere. Its
own probes see a death about as soon as the cluster does, without the table's round trip.

Certificates (without --dev) come from an ACME CA on demand: Caddy asks this daemon's
permission endpoint (vcapp/edge/permission.py) before each first issuance, and it allows only
the names of the last table. Every poll it works out each name's certificate status
(vcapp/edge/certificates.py) and, when that changed, reports it to the API (PUT
/v1/ingress/certificates), which `vcapp domains` shows.

The same table lists the mesh IPs of machines removed from the cluster; the daemon writes
them next to that registry (mesh/registry.py REVOKED_FILE), where the mesh edge reads them
and refuses those machines' mesh credentials. So the edge host learns of a removal through
its edge-scoped token and holds no etcd access.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from mesh.registry import Registry, revoked_path, write_revoked
from router import cutoff
from router.caddy import hand_over_accept_queues
from router.edge import Edge
from router.routes import EdgeRoutes, api_host
from vcapp.edge import certificates
from vcapp.edge.permission import PermissionServer
from vcapp.node.harness import Every
from vcapp.node.peerwatch_loop import Prober
from vcapp.state import peerwatch
from vcapp.views.ingress import NODE_ROUTER_PORT

log = logging.getLogger("vcapp.edge")

# How often the edge asks the cluster for its table: a new app or custom domain is served
# within about this long. Placement changes need no edge update (node routers follow them).
EDGE_POLL = 1.0
# One admin API request through a node router on the cluster network: milliseconds; longer
# means that machine is going down, and the next one is asked (a poll that finds none keeps
# the last table).
TABLE_TIMEOUT = 1.0
CA_FILE = "root.crt"
# The last routes table the cluster gave, kept so that a restarted edge serves every app at
# once (until its first answer from the cluster, which waits for the mesh, it would answer
# "No app here" for all of them).
TABLE_FILE = "last-table.json"
# A starting edge gives Caddy its first config once a node router takes a connection (the mesh
# comes up after the host does; a Caddy serving before it holds every request on routers it
# cannot reach, and its health checks mark them all down), asking every known router at once,
# again each ROUTER_CONNECT_TIMEOUT, for at most this long; then it serves the saved table.
FIRST_ROUTER_WAIT_S = 10.0
ROUTER_CONNECT_TIMEOUT = 0.5
# A certificate's status changes with a line in Caddy's issuance log, except when it expires:
# the statuses are worked out from Caddy's storage again at least this often.
CERT_REFRESH_S = 30.0


def router_address(text: str) -> str:
    """"10.1.0.11" or "10.1.0.11:7080" -> "10.1.0.11:7080"."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    return text if sep and port.isdigit() and host else f"{text}:{NODE_ROUTER_PORT}"


@dataclass
class EdgeOptions:
    domain: str
    token: str
    workdir: Path
    nodes: list[str] = field(default_factory=list)
    mesh_registry: Path | None = None
    dev: bool = False
    https_port: int = 443
    http_port: int = 80
    acme_email: str | None = None
    acme_ca: str | None = None  # the ACME directory URL; None: Caddy's default (Let's Encrypt)
    acme_ca_root: str | None = None  # PEM roots to trust for acme_ca (a private CA)


class EdgeDaemon:
    def __init__(self, opts: EdgeOptions, edge: Edge | None = None):
        self.opts = opts
        self.served: frozenset[str] = frozenset()  # the names of the last table
        self.permission = None if opts.dev or edge else PermissionServer(lambda name: name in self.served)
        self.edge = edge or Edge(opts.workdir / "caddy", https_port=opts.https_port, http_port=opts.http_port,
                                 dev=opts.dev, acme_email=opts.acme_email, acme_directory=opts.acme_ca,
                                 acme_ca_root=opts.acme_ca_root,
                                 ask_url=self.permission.url if self.permission else None)
        self.cert_log = certificates.LogReader(self.edge.cert_log)
        self.attempts: dict[str, certificates.Attempt] = {}
        self.statuses: dict | None = None  # the certificate statuses worked out last
        self.cert_inputs: tuple | None = None  # (served names, first visits) they were worked out from
        self.cert_refresh = Every(CERT_REFRESH_S)
        self.reported: dict | None = None  # the certificate statuses the API has
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {opts.token}"
        self.last_table: dict | None = self.load_table()
        self.answered: str | None = None  # the router that gave the last table
        self.silent: set[str] = set()  # routers whose last ask failed
        # This edge's probes of the routers; one that falls is cut from the probe's thread.
        self.prober = Prober(lambda router, target: self.settle(), "edge-probe")
        self.tracker = self.prober.tracker
        self.lock = threading.Lock()  # `fell`, between the loop and the probes
        self.fell: list[str] = []  # the routers fallen at the last look, whose connections were cut

    def known_routers(self) -> list[str]:
        """Node routers to ask: the --node ones, the mesh registry's, the last table's; the one
        that answered last first, those that did not answer or the table names down last
        (asking a dead one first costs TABLE_TIMEOUT on every poll)."""
        found = [router_address(n) for n in self.opts.nodes]
        if self.opts.mesh_registry and self.opts.mesh_registry.exists():
            found += [f"{r.mesh_ip}:{NODE_ROUTER_PORT}" for r in Registry(self.opts.mesh_registry).all()]
        found += (self.last_table or {}).get("nodes", [])
        down = set((self.last_table or {}).get("down") or ())
        return sorted(dict.fromkeys(found), key=lambda r: (r != self.answered, r in self.silent or r in down))

    def fetch_table(self) -> dict | None:
        """GET /v1/ingress through the first node router that answers."""
        for router in self.known_routers():
            try:
                resp = self.session.get(f"http://{router}/v1/ingress", timeout=TABLE_TIMEOUT,
                                        headers={"Host": api_host(self.opts.domain)})
            except requests.RequestException as e:
                log.debug("node router %s: %s", router, type(e).__name__)
                self.silent.add(router)
                continue
            self.silent.discard(router)
            if resp.status_code == 200:
                self.answered = router
                return resp.json()
            log.warning("node router %s answered %s for the routes table: %s", router, resp.status_code,
                        resp.text[:200])
        return None

    def first_router(self, wait_s: float) -> str | None:
        """The first known router to take a TCP connection, all of them tried at once and again
        until one does or `wait_s` passed (None)."""
        routers = self.known_routers()
        if not routers:
            return None
        found: list[str] = []
        done = threading.Event()
        deadline = time.monotonic() + wait_s

        def connect(router: str) -> None:
            host, _, port = router.rpartition(":")
            while not done.is_set() and time.monotonic() < deadline:
                began = time.monotonic()
                try:
                    socket.create_connection((host, int(port)), timeout=ROUTER_CONNECT_TIMEOUT).close()
                except OSError:  # not up yet, or no route yet: a fast failure waits out the interval
                    done.wait(max(0.0, ROUTER_CONNECT_TIMEOUT - (time.monotonic() - began)))
                    continue
                found.append(router)
                done.set()

        threads = [threading.Thread(target=connect, args=(r,), daemon=True, name="edge-first-router")
                   for r in routers]
        for t in threads:
            t.start()
        done.wait(wait_s)
        done.set()
        return found[0] if found else None

    def routes(self, ask: bool = True) -> EdgeRoutes:
        """The routes to serve: the cluster's table (`ask`: asked now, through a router), else
        the last one it gave."""
        table = self.fetch_table() if ask else None
        if table is not None:
            if table.get("domain") not in (None, self.opts.domain):
                log.warning("the cluster serves *.%s, this edge *.%s: check --domain", table["domain"],
                            self.opts.domain)
            if table != self.last_table:
                self.save_table(table)
            self.last_table = table
            self.publish_revoked(table)
        table = self.last_table or {}
        nodes = table.get("nodes") or self.known_routers()
        routes = EdgeRoutes.build(self.opts.domain, table.get("apps", []), nodes, table.get("domains", {}),
                                  table.get("placed", {}), table.get("down", []))
        if table:
            self.served = frozenset(routes.hostnames())
        return routes

    def load_table(self) -> dict | None:
        try:
            table = json.loads((self.opts.workdir / TABLE_FILE).read_text())
        except (OSError, ValueError):
            return None
        return table if isinstance(table, dict) else None

    def save_table(self, table: dict) -> None:
        path = self.opts.workdir / TABLE_FILE
        try:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(table))
            os.replace(tmp, path)
        except OSError as e:  # the edge serves on; only a restart would wait for the cluster
            log.warning("cannot keep the routes table in %s: %s", path, e)

    def certificate_statuses(self) -> dict[str, dict]:
        """{name: CertStatus dict} for every served name (vcapp/edge/certificates.py). Caddy's
        storage is read again only when its log tells of an attempt, the served names or the
        first visits changed, or CERT_REFRESH_S passed (an expiry): not on every poll."""
        parsed = [a for line in self.cert_log.new_lines() if (a := certificates.parse_line(line))]
        asked = self.permission.first_asks() if self.permission else {}
        inputs = (self.served, frozenset(asked))
        if not parsed and inputs == self.cert_inputs and not self.cert_refresh.due():
            return self.statuses
        self.cert_inputs = inputs
        self.attempts = {n: a for n, a in certificates.latest(parsed, self.attempts).items() if n in self.served}
        names = sorted(self.served)
        issued = certificates.issued_certificates(self.edge.caddy.storage_dir, names)
        self.statuses = {n: st.to_dict() for n, st in
                         certificates.decide(names, issued, self.attempts, asked, time.time()).items()}
        return self.statuses

    def report_certificates(self) -> None:
        """Tell the API each name's certificate status when it changed (through the router
        that gave the last table); a failed report is tried again next poll."""
        if not self.answered or not self.served:
            return  # no table yet: nothing to report on, and the log waits (it names the served names)
        statuses = self.certificate_statuses()
        if statuses == self.reported:
            return
        try:
            resp = self.session.put(f"http://{self.answered}/v1/ingress/certificates", timeout=TABLE_TIMEOUT,
                                    json={"certificates": statuses}, headers={"Host": api_host(self.opts.domain)})
        except requests.RequestException as e:
            log.debug("certificate report to %s: %s", self.answered, type(e).__name__)
            return
        if resp.status_code == 200:
            self.reported = statuses
        else:
            log.warning("the API refused this edge's certificate report (%s): %s", resp.status_code,
                        resp.text[:200])

    def publish_revoked(self, table: dict) -> None:
        """Hand the cluster's revoked mesh IPs to the mesh edge on this host (if it runs one)."""
        registry = self.opts.mesh_registry
        if registry is None or not registry.exists() or not isinstance(table.get("mesh_revoked"), list):
            return
        if write_revoked(revoked_path(registry), table["mesh_revoked"]):
            log.info("revoked mesh IPs now: %s", ", ".join(table["mesh_revoked"]) or "none")

    def start(self) -> Path | None:
        """Start Caddy with what is known now; in dev mode write the CA clients must trust."""
        self.opts.workdir.mkdir(parents=True, exist_ok=True)
        if self.permission:
            self.permission.start()
        hand_over_accept_queues()  # the edge reloads for a custom domain or a machine
        self.edge.start()
        began = time.monotonic()
        first = self.first_router(FIRST_ROUTER_WAIT_S)
        if first:
            self.answered = first  # asked first
        elif self.known_routers():
            log.warning("no node router took a connection within %.0f s: serving the last table",
                        FIRST_ROUTER_WAIT_S)
        self.edge.update(self.routes(ask=first is not None))
        log.info("edge: serving %.1f s after its start (first router: %s)", time.monotonic() - began,
                 first or "none")
        if not self.opts.dev:
            return None
        ca = self.opts.workdir / CA_FILE
        ca.write_text(self.edge.root_ca_pem())
        return ca

    def run(self, stop: threading.Event) -> None:
        poll = Every(EDGE_POLL)
        while not stop.wait(peerwatch.PROBE_EVERY_S):
            try:
                self.probe_routers()
                if poll.due():
                    if self.edge.update(self.routes()):
                        table = self.last_table or {}
                        log.info("edge: %d app(s), %d machine(s)", len(table.get("apps", [])),
                                 len(table.get("nodes", [])))
                    self.report_certificates()
                self.settle()
            except Exception:  # a restarting Caddy or an odd answer: try again next poll
                log.exception("edge update failed; next poll tries again")

    def probe_routers(self) -> None:
        """Probe every router of the table (vcapp/node/peerwatch_loop.Prober)."""
        routers = (self.last_table or {}).get("nodes") or ()
        self.prober.round({r: (r.rpartition(":")[0], int(r.rpartition(":")[2])) for r in routers})

    def settle(self) -> None:
        """Cut the routers that fell since the last look (from the loop or a probe's thread)."""
        with self.lock:
            fallen = self.fallen()
            before, self.fell = self.fell, fallen
        self.cut_the_fallen(before, fallen)

    def fallen(self) -> list[str]:
        """Routers to stop waiting on: those the cluster names down, and those this edge's own
        probes have not reached lately (two misses, SILENCE_S: vcapp/state/peerwatch.py)."""
        return sorted(set(self.prober.suspects()) | set((self.last_table or {}).get("down") or ()))

    def cut_the_fallen(self, before: list[str], now: list[str]) -> None:
        """Requests in flight to a router that just fell (`fallen`) fail at once and are
        retried (router/cutoff.py); the table keeps listing it, so nothing reloads."""
        for addr in cutoff.only_in(now, before):
            log.info("node router %s fell (unreachable or down): cutting the connections to it", addr)
            cutoff.abort(addr, (NODE_ROUTER_PORT,))

    def stop(self) -> None:
        self.prober.stop()
        self.edge.stop()
        if self.permission:
            self.permission.stop()
