"""`vcapp edge run --domain D`: serve the cluster's apps at https://<app>.D (vcapp/edge_daemon.py)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

import click

from vcapp.client import load_login
from vcapp.edge_daemon import EdgeDaemon, EdgeOptions
from vcapp.node.config import data_dir


def _token(given: str | None) -> str:
    token = given or os.environ.get("VCAPP_TOKEN")
    if not token:
        login = load_login()
        token = login.token if login else None
    if not token:
        raise click.UsageError("the edge reads its routes from the admin API: give --token (or $VCAPP_TOKEN, "
                               "or `vcapp login` first); `vcapp tokens admin create --name edge --scope edge` makes one")
    return token


@click.group("edge")
def edge() -> None:
    """The public entry: TLS and routing of *.DOMAIN to the cluster's machines."""


@edge.command("run")
@click.option("--domain", required=True, help="Apps are served at <app>.DOMAIN, the API at api.DOMAIN.")
@click.option("--node", "nodes", multiple=True, metavar="ADDR",
              help="A machine's node router (ADDR or ADDR:7080) to read routes through; repeatable.")
@click.option("--mesh-registry", type=click.Path(path_type=Path), default=None,
              help="The mesh coordination server's registry (default: <data dir>/mesh/edge-registry.json).")
@click.option("--dev", is_flag=True, help="Certificates from a local CA instead of ACME; prints the CA file.")
@click.option("--https-port", default=443, show_default=True, type=int)
@click.option("--http-port", default=80, show_default=True, type=int, help="Redirects to HTTPS, ACME challenges.")
@click.option("--acme-email", default=None, help="Contact address for the ACME account (production).")
@click.option("--token", default=None, help="Token the edge reads routes with, best an edge-scoped one (`vcapp tokens admin create --scope edge`; default $VCAPP_TOKEN).")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Where Caddy keeps certificates (default: <data dir>/edge).")
def run(domain, nodes, mesh_registry, dev, https_port, http_port, acme_email, token, workdir) -> None:
    """Run an edge until stopped (SIGTERM/SIGINT). Several edges may run with the same routes."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    registry = mesh_registry or data_dir() / "mesh" / "edge-registry.json"
    if not nodes and not registry.exists():
        raise click.UsageError("no machine to reach: give --node ADDR (repeatable), or run the edge where "
                               f"the mesh coordination server keeps its registry ({registry})")
    opts = EdgeOptions(domain, _token(token), workdir or data_dir() / "edge", list(nodes), registry, dev,
                       https_port, http_port, acme_email)
    daemon = EdgeDaemon(opts)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        ca = daemon.start()
        click.echo(f"edge serving https://*.{domain} on port {https_port}")
        if ca:
            click.echo(f"dev CA certificate: {ca} (clients trust it with `curl --cacert {ca}`)")
        sys.stdout.flush()
        daemon.run(stop)
    finally:
        daemon.stop()
