"""`vcapp mesh ...`: the mesh daemons (on the edge, on each machine) and their status."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from pathlib import Path

import click

from mesh import auth, edge, paths, status
from mesh.meshd import Agent, AgentConfig, MeshAuthError
from mesh.wg import WgError

DEFAULT_INTERFACE = "vcmesh0"
interface_option = click.option(
    "--interface", default=lambda: os.environ.get("VCAPP_MESH_INTERFACE", DEFAULT_INTERFACE),
    show_default=f"{DEFAULT_INTERFACE} (or $VCAPP_MESH_INTERFACE)",
    help="WireGuard interface name, unique on the host (at most 15 characters).")


def _data_dir() -> Path:
    return Path(os.environ.get("VCAPP_DATA_DIR", "/var/lib/vcapp"))


def _run_dir() -> Path:
    return Path(os.environ.get("VCAPP_RUN_DIR", "/run/vcapp")) / "mesh"


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _secret(value: str | None, path: str | None, env: str, what: str) -> str:
    if path:
        return Path(path).read_text().strip()
    if value:
        return value.strip()
    if os.environ.get(env):
        return os.environ[env].strip()
    raise click.UsageError(f"give the {what}: --{what.replace(' ', '-')}-file PATH or ${env}")


@click.group()
def mesh() -> None:
    """The WireGuard mesh between machines and the edge."""


@mesh.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(as_json: bool) -> None:
    """Per peer: path (lan/direct/relay-udp/relay-tcp), endpoint, handshake, RTT, bytes."""
    try:
        data = status.read(_run_dir())
    except FileNotFoundError as e:
        raise click.ClickException(str(e))
    click.echo(json.dumps(data, indent=2) if as_json else status.render(data))


@mesh.command("edge")
@click.option("--listen", default="0.0.0.0:8443", show_default=True,
              help="HOST:PORT of the coordination and TCP relay service (HTTP; UDP probe on the same port).")
@click.option("--wg-port", default=edge.WG_PORT, show_default=True, help="The edge's WireGuard UDP port.")
@click.option("--mesh-key-file", type=click.Path(exists=True, dir_okay=False),
              help="File holding the cluster's mesh key (hex); or set $VCAPP_MESH_KEY.")
@interface_option
def edge_cmd(listen: str, wg_port: int, mesh_key_file: str | None, interface: str) -> None:
    """Run the edge's side of the mesh: hub WireGuard peer, coordination and relay."""
    _logging()
    host, _, port = listen.rpartition(":")
    try:
        key = auth.load_mesh_key(_secret(None, mesh_key_file, "VCAPP_MESH_KEY", "mesh key"))
        daemon = edge.Edge(edge.EdgeConfig(key, interface, _data_dir(), _run_dir(), host or "0.0.0.0",
                                           int(port), wg_port))
        daemon.run(_stop_on_signals())
    except (ValueError, WgError, OSError) as e:
        raise click.ClickException(str(e))


@mesh.command("up")
@click.option("--coord", "coord_url", required=True,
              help="Coordination URL on the edge, e.g. http://edge.example.com:8443/_mesh")
@click.option("--node", required=True, help="This machine's node name (as given at join).")
@click.option("--mesh-ip", required=True, help="This machine's overlay address (as given at join).")
@click.option("--credential-file", type=click.Path(exists=True, dir_okay=False),
              help="File holding the join credential; or set $VCAPP_MESH_CREDENTIAL.")
@click.option("--listen-port", type=int, default=None,
              help="WireGuard UDP port (default: picked at random once, then kept).")
@click.option("--direct-retry", type=float, default=paths.DIRECT_RETRY, show_default=True,
              help="Seconds between walks over a relayed peer's direct candidates.")
@click.option("--edge-udp-retry", type=float, default=paths.EDGE_UDP_RETRY, show_default=True,
              help="Seconds between UDP checks while the edge is reached over TCP.")
@interface_option
def up_cmd(coord_url: str, node: str, mesh_ip: str, credential_file: str | None, listen_port: int | None,
           direct_retry: float, edge_udp_retry: float, interface: str) -> None:
    """Join this machine to the mesh and keep its paths converged (runs until stopped)."""
    _logging()
    credential = _secret(None, credential_file, "VCAPP_MESH_CREDENTIAL", "credential")
    try:
        agent = Agent(AgentConfig(coord_url, node, mesh_ip, credential, interface, _data_dir(), _run_dir(),
                                  listen_port, direct_retry, edge_udp_retry))
        stop = _stop_on_signals()
        threading.Thread(target=lambda: (stop.wait(), agent.stop.set()), daemon=True).start()
        agent.run()
    except MeshAuthError as e:
        raise click.ClickException(f"{e}. Ask the control plane for a new join (vcapp node join).")
    except (WgError, OSError) as e:
        raise click.ClickException(str(e))


@mesh.command("credential")
@click.option("--mesh-key-file", type=click.Path(exists=True, dir_okay=False),
              help="File holding the cluster's mesh key (hex); or set $VCAPP_MESH_KEY.")
@click.option("--node", required=True)
@click.option("--mesh-ip", required=True)
def credential_cmd(mesh_key_file: str | None, node: str, mesh_ip: str) -> None:
    """Print the join credential for NODE at MESH_IP (what the control plane hands out)."""
    key = auth.load_mesh_key(_secret(None, mesh_key_file, "VCAPP_MESH_KEY", "mesh key"))
    click.echo(auth.issue_credential(key, node, mesh_ip))
