"""`vcapp edge run --domain D`: serve the cluster's apps at https://<app>.D (vcapp/edge/daemon.py);
`vcapp edge setup`: the edge host's daemons as boot services (vcapp/edge/setup.py)."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

import click

from vcapp.cli.client import load_login
from vcapp.edge import setup as edge_setup
from vcapp.edge.daemon import EdgeDaemon, EdgeOptions
from vcapp.machine import data_dir


def _token(given: str | None, path: Path | None = None) -> str:
    token = path.read_text().strip() if path else given or os.environ.get("VCAPP_TOKEN")
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


def _acme_ca(url: str | None) -> str | None:
    if url is not None and not url.startswith("https://"):
        raise click.UsageError(f"--acme-ca: {url!r} is not an ACME directory URL like "
                               "https://acme-v02.api.letsencrypt.org/directory")
    return url


def _acme_ca_root(path: Path | None) -> str | None:
    """The PEM file of roots to trust for the ACME CA, checked to hold a certificate."""
    if path is None:
        return None
    from cryptography import x509
    try:
        x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError:
        raise click.UsageError(f"--acme-ca-root: {path} holds no PEM certificate") from None
    return str(path.resolve())


ACME_CA_HELP = "ACME directory URL of the CA (default: Let's Encrypt), e.g. a private step-ca or Pebble."
ACME_CA_ROOT_HELP = "PEM file of the root(s) the ACME CA's own HTTPS is signed by (a private CA)."


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
@click.option("--acme-ca", default=None, envvar="VCAPP_ACME_CA", show_envvar=True, help=ACME_CA_HELP)
@click.option("--acme-ca-root", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              envvar="VCAPP_ACME_CA_ROOT", show_envvar=True,
              help=ACME_CA_ROOT_HELP)
@click.option("--token", default=None, help="Token the edge reads routes with, best an edge-scoped one (`vcapp tokens admin create --scope edge`; default $VCAPP_TOKEN).")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="File holding that token (what `vcapp edge setup` gives the service).")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Where Caddy keeps certificates (default: <data dir>/edge).")
def run(domain, nodes, mesh_registry, dev, https_port, http_port, acme_email, acme_ca, acme_ca_root, token, token_file,
        workdir) -> None:
    """Run an edge until stopped (SIGTERM/SIGINT). Several edges may run with the same routes."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    registry = mesh_registry or data_dir() / "mesh" / "edge-registry.json"
    if not nodes and not registry.exists():
        raise click.UsageError("no machine to reach: give --node ADDR (repeatable), or run the edge where "
                               f"the mesh coordination server keeps its registry ({registry})")
    opts = EdgeOptions(domain, _token(token, token_file), workdir or data_dir() / "edge", list(nodes), registry, dev,
                       https_port, http_port, acme_email, _acme_ca(acme_ca), _acme_ca_root(acme_ca_root))
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


def _read_secret(path: Path | None, what: str, prompt: bool) -> str | None:
    if path is not None:
        return (sys.stdin.read() if str(path) == "-" else path.read_text()).strip()
    if prompt and sys.stdin.isatty():
        return click.prompt(what, hide_input=True).strip()
    return None


@edge.command("setup")
@click.option("--mesh-key-file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
              default=None, help="File holding the mesh key `vcapp cluster init` printed, - for standard input "
                                 "(asked for when omitted on a terminal).")
@click.option("--domain", default=None, help="Also serve https://<app>.DOMAIN (needs an edge token).")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
              default=None, help="File holding an edge token (`vcapp tokens admin create --name edge --scope "
                                 "edge`), - for standard input.")
@click.option("--listen", default=edge_setup.DEFAULT_LISTEN, show_default=True,
              help="HOST:PORT of the mesh coordination service (TCP and UDP).")
@click.option("--dev", is_flag=True, help="Certificates from a local CA instead of ACME.")
@click.option("--https-port", default=443, show_default=True, type=int)
@click.option("--http-port", default=80, show_default=True, type=int)
@click.option("--acme-email", default=None, help="Contact address for the ACME account.")
@click.option("--acme-ca", default=None, envvar="VCAPP_ACME_CA", show_envvar=True, help=ACME_CA_HELP)
@click.option("--acme-ca-root", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              envvar="VCAPP_ACME_CA_ROOT", show_envvar=True,
              help=ACME_CA_ROOT_HELP + " Copied beside the edge's credentials.")
def setup(mesh_key_file, domain, token_file, listen, dev, https_port, http_port, acme_email, acme_ca,
          acme_ca_root) -> None:
    """Make this host the cluster's edge for good: the mesh hub (and, with --domain, the HTTPS
    entry) as systemd services that start at boot, their secrets in root-only files. Run it
    again with --domain and --token-file once the cluster has an edge token."""
    from mesh import auth
    from vcapp import tokens

    creds = edge_setup.credentials_dir(data_dir())
    mesh_key = _read_secret(mesh_key_file, "mesh key (from `vcapp cluster init`)",
                            not (creds / edge_setup.MESH_KEY_FILE).exists())
    if mesh_key is None and not (creds / edge_setup.MESH_KEY_FILE).exists():
        raise click.UsageError("give the mesh key `vcapp cluster init` printed: --mesh-key-file FILE")
    if mesh_key is not None:
        try:
            auth.load_mesh_key(mesh_key)
        except ValueError as e:
            raise click.UsageError(f"mesh key: {e}")
    routes = token = None
    if domain:
        token = _read_secret(token_file, "edge token", not (creds / edge_setup.TOKEN_FILE).exists())
        if token is None and not (creds / edge_setup.TOKEN_FILE).exists():
            raise click.UsageError("serving --domain needs an edge token: --token-file FILE "
                                   "(`vcapp tokens admin create --name edge --scope edge` makes one)")
        if token is not None and not tokens.ADMIN_RE.match(token):
            raise click.UsageError("that is not a vcapp admin token (they look like vcadm_<id>_<secret>); "
                                   "`vcapp tokens admin create --name edge --scope edge` makes one")
        acme_ca = _acme_ca(acme_ca)
        _acme_ca_root(acme_ca_root)
        root = edge_setup.keep_acme_ca_root(data_dir(), acme_ca_root) if acme_ca_root else None
        routes = edge_setup.RoutesOptions(domain, dev, https_port, http_port, acme_email, acme_ca, root)
    elif token_file:
        raise click.UsageError("--token-file goes with --domain (the HTTPS entry it is for)")
    as_units, commands = edge_setup.setup(data_dir(), listen, mesh_key, routes, token)
    click.echo(f"secrets saved in {creds} (root only)")
    if as_units:
        for name in commands:
            click.echo(f"{name}: enabled and started (`systemctl status {name}`, `journalctl -u {name}`)")
    else:
        click.echo("systemd does not run this machine: start these at its boot:")
        for name, argv in commands.items():
            click.echo(f"  {name}: {shlex.join(argv)}")
