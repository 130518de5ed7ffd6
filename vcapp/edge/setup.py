"""`vcapp edge setup`: the edge host's two daemons as boot services, their secrets in files.

    vcapp-mesh-edge.service  `vcapp mesh edge`: the mesh's hub, coordination and TCP relay;
                             needs the cluster's mesh key (printed once by `cluster init`)
    vcapp-edge.service       `vcapp edge run`: HTTPS for *.DOMAIN and api.DOMAIN; needs an
                             edge-scoped admin token to read the routes

Two units because they have two lifetimes: the mesh hub must run before any other machine can
join (right after `cluster init`), the HTTPS entry once the API answers and a token exists.
`setup` installs the hub, and the entry as well when given a domain and a token; run again
with them later, it adds the entry and leaves the hub as it is.

The secrets are copied into <data dir>/credentials (0700, files 0600) and the daemons read
them with --mesh-key-file / --token-file: they are never on a command line, in a unit file,
or in a process environment that `ps e` would list. Where systemd does not run the machine
(a container, the simulator's edge host), the same command lines are printed to be started
at boot; the simulator starts them (vcapp/dev/platform.py).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from vcapp.node import service

MESH_UNIT = "vcapp-mesh-edge.service"
ROUTES_UNIT = "vcapp-edge.service"
CREDENTIALS = "credentials"
MESH_KEY_FILE = "mesh.key"
TOKEN_FILE = "edge.token"
ACME_CA_ROOT_FILE = "acme-ca-root.pem"  # beside the secrets: not one, but the unit needs a stable path
DEFAULT_LISTEN = "0.0.0.0:8443"


@dataclass(frozen=True)
class RoutesOptions:
    domain: str
    dev: bool = False
    https_port: int = 443
    http_port: int = 80
    acme_email: str | None = None
    acme_ca: str | None = None
    acme_ca_root: str | None = None  # the copy keep_acme_ca_root made


def credentials_dir(data_dir: Path) -> Path:
    return data_dir / CREDENTIALS


def save_secret(path: Path, text: str) -> None:
    """Write a secret readable by root only, atomically (a daemon never reads half a key)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text.strip() + "\n")
    os.replace(tmp, path)


def acme_ca_root_path(data_dir: Path) -> Path:
    return credentials_dir(data_dir) / ACME_CA_ROOT_FILE


def keep_acme_ca_root(data_dir: Path, given: Path) -> str:
    """Copy the ACME CA's root file where the edge unit reads it; returns that path."""
    path = acme_ca_root_path(data_dir)
    save_secret(path, given.read_text())
    return str(path)


def mesh_argv(data_dir: Path, listen: str = DEFAULT_LISTEN) -> list[str]:
    return [sys.executable, "-m", "vcapp", "mesh", "edge", "--listen", listen,
            "--mesh-key-file", str(credentials_dir(data_dir) / MESH_KEY_FILE)]


def routes_argv(data_dir: Path, opts: RoutesOptions) -> list[str]:
    argv = [sys.executable, "-m", "vcapp", "edge", "run", "--domain", opts.domain,
            "--token-file", str(credentials_dir(data_dir) / TOKEN_FILE),
            "--https-port", str(opts.https_port), "--http-port", str(opts.http_port)]
    if opts.dev:
        argv.append("--dev")
    if opts.acme_email:
        argv += ["--acme-email", opts.acme_email]
    if opts.acme_ca:
        argv += ["--acme-ca", opts.acme_ca]
    if opts.acme_ca_root:
        argv += ["--acme-ca-root", opts.acme_ca_root]
    return argv


def units(data_dir: Path, listen: str, routes: RoutesOptions | None) -> dict[str, str]:
    """{unit name: unit text} for this edge (the units keep $VCAPP_DATA_DIR/$VCAPP_RUN_DIR when
    set). The hub keeps its wireguard-go across a restart (KillMode=process: the next hub
    adopts the interface); the HTTPS entry's Caddy stops with it."""
    env = service.placed_env()
    out = {MESH_UNIT: service.unit_text(mesh_argv(data_dir, listen), env, "vcapp mesh hub on the edge "
                                        "(WireGuard, coordination, TCP relay)", runs_containers=False)}
    if routes is not None:
        out[ROUTES_UNIT] = service.unit_text(routes_argv(data_dir, routes), env, f"vcapp edge: HTTPS for "
                                             f"*.{routes.domain}", kill_mode="control-group",
                                             runs_containers=False, after=(MESH_UNIT,))
    return out


def setup(data_dir: Path, listen: str, mesh_key: str | None, routes: RoutesOptions | None,
          token: str | None) -> tuple[bool, dict[str, list[str]]]:
    """Save the secrets given, then install and start the units where systemd runs the
    machine. Returns (installed as units?, {unit: its command line})."""
    creds = credentials_dir(data_dir)
    if mesh_key:
        save_secret(creds / MESH_KEY_FILE, mesh_key)
    if token:
        save_secret(creds / TOKEN_FILE, token)
    texts = units(data_dir, listen, routes)
    commands = {name: service.exec_start_of(text) for name, text in texts.items()}
    if not service.systemd_runs_this_machine():
        return False, commands
    for name, text in texts.items():
        service.install_and_start(name, text)
    return True, commands
