"""The node router loop: this machine's Caddy serves every app hostname on <addr>:7080 (and, for
the other machines' routers, its own instances on <addr>:7081) and
sends each request to a healthy instance of its app, on this machine or another.

`step` (every daemon tick) reads cluster state and computes the desired NodeRoutes
(vcapp/views/ingress.py); a worker thread owns the NodeRouter (router/node.py): it starts Caddy and
the token auth service, writes the routes' answers (a placement change reloads nothing) and
loads a new config only when the config changed (or Caddy was restarted), and restarts Caddy if
it dies. When a machine goes down (its death seen), the worker cuts this machine's open
connections to that machine's hop server (router/cutoff.py) once the answers are without it.
Token checks look records up in etcd (vcapp/state/apptokens.py) and sessions are signed with
the cluster's derived "sessions" key.
While a runtime waits to retire a container (vcapp/state/routeswitch.py), `step` reads the open
switch requests before the cluster state, and once the worker has applied routes computed from
that state and Caddy asks only their answers (NodeRouter.settled) it acknowledges the newest
request, so the runtime stops the old container only after this router stopped sending to it;
it reads them again after the cluster state for the containers leaving this machine, which its
hop server serves until their request closes.
Every COUNT_EVERY_S the worker reads Caddy's per-host request counters and `step` publishes
them at /vc/requests/<node> (bound to the lease) for the controller's request-rate history.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from router import cutoff
from router.caddy import hand_over_accept_queues
from router.caddyjson import NODE_HEALTH_HOST
from router.node import NodeRouter
from router.routes import NodeRoutes, api_host
from vcapp.machine import derived_key
from vcapp.node.harness import Every, Worker
from vcapp.pidfile import live_pid
from vcapp.state import apptokens, keys, routeswitch
from vcapp.state.store import per_thread_store
from vcapp.views import ingress

log = logging.getLogger("vcapp.router")

# Even with unchanged routes the worker compares with what Caddy runs this often, so a
# Caddy that lost its in-memory config (restart) is serving again within this long.
RESYNC_INTERVAL = 5.0
COUNT_EVERY_S = 10.0  # the history samples every 10 s (vcapp/state/metrics.py)
# After a failed start or load, wait this long before trying again (Caddy logs say why).
RETRY_AFTER = 2.0
PID_FILE = "caddy.pid"


def kill_stale_caddy(workdir: Path) -> None:
    """Stop a Caddy left by an earlier daemon of this machine (it would hold our port)."""
    pid = live_pid(workdir / PID_FILE, "caddy", str(workdir))
    if pid:
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + RETRY_AFTER
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)


class RouterLoop:
    name = "router"

    def __init__(self, ctx) -> None:
        self.workdir = ctx.base / "router"
        self.endpoints = ctx.cfg.store_endpoints()
        self.listen = f"{ctx.cfg.addr}:{ingress.NODE_ROUTER_PORT}"
        self.hop_listen = f"{ctx.cfg.addr}:{ingress.NODE_HOP_PORT}"
        self.desired: NodeRoutes | None = None
        self.node = ctx.cfg.name
        self.counts: dict | None = None  # the worker's latest read of Caddy's request counters
        self.applied: NodeRoutes | None = None  # what the worker's Caddy runs (None: unknown)
        self.acked = 0  # the newest route switch request acknowledged
        self.published: dict | None = None  # the counts last published
        self.republish = Every(6 * COUNT_EVERY_S)  # unchanged counts are written again this often
        self.router: NodeRouter | None = None  # the worker's
        self.resync = Every(RESYNC_INTERVAL)  # begun by each config the worker loads
        self.count = Every(COUNT_EVERY_S)  # begun by each read of the counters
        # Woken by `step` when the routes change, else after RESYNC_INTERVAL; a bad table or a
        # dying Caddy does not end it: it tries again after RETRY_AFTER.
        self.worker = Worker("vcapp-router", self._sync, RESYNC_INTERVAL, gap=True, retry_s=RETRY_AFTER, log=log,
                             failed=lambda e: log.exception("node router update failed; retrying in %.0fs",
                                                            RETRY_AFTER))

    def step(self, ctx) -> None:
        self.endpoints = ctx.cfg.store_endpoints()  # token checks follow membership changes
        asked = routeswitch.newest_request(ctx.store)  # before the view: see the module docstring
        view = ingress.read_view(ctx.store)
        if not view.domain:  # no routes at all: nothing to switch
            self._acknowledge(ctx, asked)
            return
        # after the view: a container whose report it lacks is still served by the hop (routeswitch.py)
        routes = ingress.node_routes(view, self.node, routeswitch.retiring(ctx.store, self.node))
        if routes != self.desired:
            self.desired = routes
            self.worker.wake()
        if routes == self.applied and self.router is not None and self.router.settled():
            self._acknowledge(ctx, asked)
        self._publish_counts(ctx, view.domain)
        self.worker.start()

    def _acknowledge(self, ctx, asked: int) -> None:
        if asked > self.acked and ctx.lease:
            routeswitch.acknowledge(ctx.store, self.node, asked, ctx.lease)
            self.acked = asked

    def _publish_counts(self, ctx, domain: str) -> None:
        """The apps' counters, for the request history (vcapp/node/metrics_loop.py). Not the API's
        (each edge polls its table every second) nor the health checks': they count no app, and
        on an idle cluster they changed every COUNT_EVERY_S, a write of every machine each time."""
        counts = self.counts
        if counts is not None:
            counts = {host: c for host, c in counts.items() if host not in (api_host(domain), NODE_HEALTH_HOST)}
        if counts is None or not ctx.lease or (counts == self.published and not self.republish.ready()):
            return
        ctx.store.put(keys.requests(self.node), {"hosts": counts, "at": time.time()}, lease=ctx.lease)
        self.published = counts
        self.republish.mark()

    # ---- the worker --------------------------------------------------------------------------

    def _start(self) -> NodeRouter:
        self.workdir.mkdir(parents=True, exist_ok=True)
        kill_stale_caddy(self.workdir)
        hand_over_accept_queues()  # this router reloads when an app or a machine comes or goes
        stores = per_thread_store(lambda: self.endpoints)
        lookup = lambda token_hash: apptokens.lookup(stores(), token_hash)  # noqa: E731
        router = NodeRouter(self.workdir, self.listen, lookup, derived_key("sessions"), hop_listen=self.hop_listen)
        router.start()
        (self.workdir / PID_FILE).write_text(str(router.caddy.proc.pid))
        log.info("node router listening on %s", self.listen)
        return router

    def _sync(self) -> None:
        """Keep Caddy running with the desired routes and read its counters; after a failure
        what Caddy runs is unknown, so the next sync loads the routes again."""
        try:
            self._converge()
        except Exception:
            self.applied = None
            raise

    def _converge(self) -> None:
        if self.router is None or self.router.caddy.proc.poll() is not None:
            if self.router is not None:
                log.warning("node router caddy exited (%s); restarting", self.router.caddy.proc.returncode)
                self.router.stop()  # its auth service and answers server
            self.applied = None
            self.router = self._start()
        desired, before = self.desired, self.applied
        if desired is not None and (desired != self.applied or self.resync.ready()):
            if self.router.update(desired):
                log.info("node router: %d app(s) routed", len(desired.apps))
            # requests in flight to a machine gone down fail, and are retried with the new answers
            gone = cutoff.only_in(desired.down, before.down) + cutoff.only_in(before.machines, desired.machines) \
                if before else []
            for addr in gone:
                cutoff.abort(addr, (ingress.NODE_HOP_PORT,))
            self.applied = desired
            self.resync.mark()
        if self.count.ready():
            self.counts = self.router.request_counts()
            self.count.mark()
