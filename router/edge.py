"""An edge: one Caddy serving the public hostnames, kept in step with an EdgeRoutes table,
and the DNS answers that tell it where each app runs (router/edge_dns.py, router/answers.py).

    edge = Edge(workdir, EdgeSettings-like options)   # nothing runs yet
    edge.start()                                      # answers server and caddy up
    edge.update(EdgeRoutes.build(...))                # idempotent; loads only when the config changes
    edge.root_ca_pem()                                # dev mode: the CA clients must trust
    edge.stop()
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from router import edge_config, edge_dns
from router.caddy import CaddyError, CaddyProcess, Launcher
from router.config_sync import ConfigSync
from router.dnsprocess import DnsProcess
from router.routes import EdgeRoutes

# The internal CA is created when the first config with a tls/pki app loads: milliseconds.
CA_TIMEOUT = 10.0
CERT_LOG = "certificates.log"  # in the Caddy workdir: edge_config.CERT_LOGGERS' lines, JSON


class Edge:
    def __init__(self, workdir: str | Path, https_port: int = 443, http_port: int = 80, dev: bool = False,
                 acme_email: str | None = None, ca_cert: str | None = None, ca_key: str | None = None,
                 launcher: Launcher | None = None, acme_directory: str | None = None,
                 acme_ca_root: str | None = None, ask_url: str | None = None):
        self.caddy = CaddyProcess(workdir, launcher)
        self.dns = DnsProcess(Path(workdir) / "dns", launcher)
        self.cert_log = Path(workdir) / CERT_LOG
        self.settings = edge_config.EdgeSettings(
            admin_socket=str(self.caddy.admin_socket), storage_dir=str(self.caddy.storage_dir),
            https_port=https_port, http_port=http_port, dev=dev, acme_email=acme_email,
            acme_directory=acme_directory, acme_ca_root=acme_ca_root, ask_url=ask_url,
            cert_log=str(self.cert_log), ca_cert=ca_cert, ca_key=ca_key)
        self.config_sync: ConfigSync | None = None

    def start(self) -> None:
        self.settings = replace(self.settings, resolver=self.dns.start())
        admin = self.caddy.start()
        self.config_sync = ConfigSync(admin, lambda routes: edge_config.render(routes, self.settings))

    def update(self, routes: EdgeRoutes) -> bool:
        """Make the edge serve `routes`: the answers first (a new config may name a new
        custom domain whose requests ask them at once), then the config. True when Caddy got
        a new config. An answers server that died is started again (on its port if free)."""
        if self.config_sync is None:
            raise CaddyError("the edge is not started; call start() first")
        if not self.dns.alive():
            self.settings = replace(self.settings, resolver=self.dns.start())
        self.dns.write(edge_dns.answers(routes))
        return self.config_sync.apply(routes)

    def root_ca_pem(self) -> str:
        """The PEM root certificate of the dev CA (after the first update in dev mode)."""
        return self.dev_ca()["root_certificate"]

    def dev_ca(self) -> dict:
        """Caddy's answer for the dev CA: name, root_certificate, intermediate_certificate (PEM).
        Only the edge config's own CA counts: right after a load the admin API may still answer
        from the bootstrap config, with a default CA that signs nothing served."""
        deadline = time.monotonic() + CA_TIMEOUT
        while True:
            status, body = self.caddy.admin.request("GET", "/pki/ca/local")
            if status == 200 and (ca := json.loads(body)).get("name") == edge_config.DEV_CA_NAME:
                return ca
            if time.monotonic() > deadline:
                raise CaddyError(f"no dev CA after {CA_TIMEOUT:.0f}s ({status}: {body!r}); "
                                 "is the edge in dev mode and updated once?")
            time.sleep(0.05)

    def stop(self) -> None:
        self.caddy.stop()
        self.dns.stop()
