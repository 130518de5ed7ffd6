"""A node router: this machine's Caddy plus its token auth service, kept in step with a
NodeRoutes table.

    node = NodeRouter(workdir, listen="100.96.0.5:7080", lookup=store.lookup, key=cluster_key)
    node.start()                         # auth service thread + caddy
    node.update(NodeRoutes.build(...))   # idempotent; loads only on change
    node.stop()
"""

from __future__ import annotations

from pathlib import Path

from router import node_config, requestcount
from router.authserver import AuthServer
from router.caddy import CaddyError, CaddyProcess, Launcher
from router.config_sync import ConfigSync
from router.routes import NodeRoutes
from router.tokencheck import Lookup


ACCESS_LOG = "access.log"


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
        self.caddy = CaddyProcess(workdir, launcher)
        auth_listen = auth_listen or f"unix/{Path(workdir).resolve() / 'auth.sock'}"
        self.auth = AuthServer(auth_listen, lookup, key)
        self.access_log = access_log_path(workdir)
        self.settings = node_config.NodeSettings(
            admin_socket=str(self.caddy.admin_socket), storage_dir=str(self.caddy.storage_dir),
            listen=listen, auth=auth_listen, hop_listen=hop_listen, access_log=str(self.access_log))
        self.config_sync: ConfigSync | None = None

    def start(self) -> None:
        self.auth.start()
        admin = self.caddy.start()
        self.config_sync = ConfigSync(admin, lambda routes: node_config.render(routes, self.settings))

    def update(self, routes: NodeRoutes) -> bool:
        """Make this node route `routes`. True when Caddy got a new config."""
        if self.config_sync is None:
            raise CaddyError("the node router is not started; call start() first")
        return self.config_sync.apply(routes)

    def request_counts(self) -> dict[str, dict[str, int]]:
        """{host: {requests, errors}} served by this router since its Caddy started."""
        status, body = self.caddy.admin.request("GET", "/metrics")
        if status != 200:
            raise CaddyError(f"caddy metrics answered {status}")
        return requestcount.parse(body.decode(errors="replace"), exclude=(node_config.HOP_SERVER,))

    def stop(self) -> None:
        self.caddy.stop()
        self.auth.stop()
