"""A node router: this machine's Caddy, its DNS answers and its token auth service, kept in
step with a NodeRoutes table.

    node = NodeRouter(workdir, listen="100.96.0.5:7080", lookup=store.lookup, key=cluster_key)
    node.start()                         # auth service thread, answers server, caddy
    node.update(NodeRoutes.build(...))   # idempotent; answers and pages, then a load only on a config change
    node.settled()                       # every request since asks the last answers written
    node.stop()

Where each app's instances are goes to the answers (router/node_dns.py) and the "not running"
pages (router/node_config.py page_file), not to Caddy's config: a deploy, a scale or a
failover reloads nothing.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

from router import answers, node_config, node_dns, requestcount
from router.authserver import AuthServer
from router.caddy import CaddyError, CaddyProcess, Launcher
from router.config_sync import ConfigSync
from router.dnsprocess import DnsProcess
from router.routes import NodeRoutes
from router.tokencheck import Lookup

ACCESS_LOG = "access.log"
PAGES = "pages"
# Caddy caches an answer for answers.REFRESH_S from its lookup: a lookup just before a write
# serves until then, so the write is in force that long after it (and a scheduling margin).
SETTLE_S = answers.REFRESH_S + 0.2


def access_log_path(workdir: str | Path) -> Path:
    """Where the router in `workdir` writes its access lines (router/accesslog.py reads them)."""
    return Path(workdir).resolve() / ACCESS_LOG


class NodeRouter:
    """listen: where Caddy serves ("addr:port"); auth_listen: where the auth service listens
    (default: a unix socket in workdir, which Caddy dials); hop_listen: where the other
    machines' routers reach this machine's instances (None: no hop server)."""

    def __init__(self, workdir: str | Path, listen: str, lookup: Lookup, key: bytes,
                 auth_listen: str | None = None, launcher: Launcher | None = None,
                 hop_listen: str | None = None):
        workdir = Path(workdir).resolve()
        self.caddy = CaddyProcess(workdir, launcher)
        self.dns = DnsProcess(workdir / "dns", launcher)
        self.pages = workdir / PAGES
        auth_listen = auth_listen or f"unix/{workdir / 'auth.sock'}"
        self.auth = AuthServer(auth_listen, lookup, key)
        self.access_log = access_log_path(workdir)
        self.settings = node_config.NodeSettings(
            admin_socket=str(self.caddy.admin_socket), storage_dir=str(self.caddy.storage_dir),
            listen=listen, auth=auth_listen, resolver="", pages=str(self.pages), hop_listen=hop_listen,
            access_log=str(self.access_log))
        self.config_sync: ConfigSync | None = None
        self.pages_written: dict[str, str] = {}  # page file (relative) -> its page
        self.settles_at = 0.0  # monotonic: the last answers written are in force from then on

    def start(self) -> None:
        shutil.rmtree(self.pages, ignore_errors=True)  # an earlier router's: this one writes its own
        self.auth.start()
        self.settings = replace(self.settings, resolver=self.dns.start())
        admin = self.caddy.start()
        self.config_sync = ConfigSync(admin, lambda routes: node_config.render(routes, self.settings))

    def update(self, routes: NodeRoutes) -> bool:
        """Make this node route `routes`: an app that has lost its instances gets its page
        first, then the answers change, then an app that has instances again loses its page
        (no request finds neither), then the config loads if it differs (a new app's
        answers and page are there by then). True when Caddy got a new config. An answers
        server that died is started again (on its port if free)."""
        if self.config_sync is None:
            raise CaddyError("the node router is not started; call start() first")
        if not self.dns.alive():
            self.settings = replace(self.settings, resolver=self.dns.start())
        pages = self._pages(routes)
        for rel, page in pages.items():
            if self.pages_written.get(rel) != page:
                _write(self.pages / rel.lstrip("/"), page)
        if self.dns.write(node_dns.answers(routes)):
            self.settles_at = time.monotonic() + SETTLE_S
        for rel in set(self.pages_written) - set(pages):
            (self.pages / rel.lstrip("/")).unlink(missing_ok=True)
        self.pages_written = pages
        return self.config_sync.apply(routes)

    def settled(self) -> bool:
        """Whether every request Caddy routes now asks the answers last written."""
        return time.monotonic() >= self.settles_at

    @staticmethod
    def _pages(routes: NodeRoutes) -> dict[str, str]:
        """The "not running" page of each app, for each server where it has no instance."""
        out = {}
        for name, app in routes.apps:
            for server, backends in ((node_dns.NODE, node_dns.node_backends(app)),
                                     (node_dns.HOP, node_dns.hop_backends(app))):
                if not backends:
                    out[node_config.page_file(server, name)] = node_config.not_running_page(name, app)
        return out

    def request_counts(self) -> dict[str, dict[str, int]]:
        """{host: {requests, errors}} served by this router since its Caddy started."""
        status, body = self.caddy.admin.request("GET", "/metrics")
        if status != 200:
            raise CaddyError(f"caddy metrics answered {status}")
        return requestcount.parse(body.decode(errors="replace"), exclude=(node_config.HOP_SERVER,))

    def stop(self) -> None:
        self.caddy.stop()
        self.dns.stop()
        self.auth.stop()


def _write(path: Path, text: str) -> None:
    """Replace `path` whole (Caddy may read it at any moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
