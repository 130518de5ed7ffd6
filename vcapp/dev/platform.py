"""vcapp itself on a simulated cluster: what an admin would do on real machines, done for them.

Every machine gets the node daemon as a boot service (the systemd unit's ExecStart, node/service.py);
the first machine founds the cluster with the edge host as its mesh edge; the edge runs the
mesh's coordination and hub; the other machines join with the join token. Builds reach
the package registries through the cluster's one way out (vcapp/dev/egress.py), set as the
cluster setting build.proxy as an admin behind a corporate proxy would. Safe to run again:
steps already done are skipped.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from builder import stacks
from buildpacks.stacks import STACKS
from vcapp.dev.cluster import DevCluster, DevError
from vcapp.edge import setup as edge_setup
from vcapp.node import service

EDGE_COORD_PORT = 8443
CLUSTER_NAME = "dev"
DOMAIN = "apps.test"
NODE_SERVICE = "vcapp-node"
EDGE_SERVICE = "vcapp-edge"
INGRESS_SERVICE = "vcapp-ingress"
MESH_WAIT = 60.0  # s: the first machine registers with the edge within seconds of its boot
API_WAIT = 120.0  # s: the first machine's API answers within seconds of its boot; minutes = broken
SAMPLE_APP = "hello"
SAMPLE_SOURCE = Path(__file__).resolve().parents[2] / "examples" / "hello"
PUSH_TIMEOUT = 900.0  # s: a first build loads the python stack into the machine; then ~20 s


@dataclass(frozen=True)
class Acme:
    """An ACME CA for the edge instead of the dev CA: its directory URL and the PEM file of
    the root its own HTTPS is signed by (on the host's filesystem)."""

    directory: str
    ca_root: Path


@dataclass
class Platform:
    admin_token: str
    api_url: str
    first: str


def _vcapp(dc: DevCluster, host: str, *args: str, timeout: float = 180, stdin: str | None = None) -> str:
    proc = dc.run(host, ["vcapp", *args], timeout=timeout, input=stdin)
    if proc.returncode != 0:
        raise DevError(f"on {host}: vcapp {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _login(dc: DevCluster, host: str) -> dict | None:
    path = dc.host_dir(host) / "home" / ".config" / "vcapp" / "config.json"
    return json.loads(path.read_text()) if path.exists() else None


def install(dc: DevCluster, say: Callable[[str], None] = print, acme: Acme | None = None,
            restore: tuple[Path, Path] | None = None) -> Platform:
    """Bring vcapp up on every machine of a running simulated cluster; the edge's certificates
    from `acme` when given, else from its dev CA. `restore`: (backup file, age key file) to
    found the cluster from, with `vcapp backup restore`, instead of `vcapp cluster init`."""
    machines = [m.name for m in dc.topology.machines()]
    first = machines[0]
    for m in machines:
        dc.add_service(m, NODE_SERVICE, service.boot_argv(dc.python))  # the systemd unit's ExecStart
    if not (dc.host_dir(first) / "data" / "node.json").exists():
        edge = f"{dc.topology.host('edge').addr}:{EDGE_COORD_PORT}"
        site = dc.topology.host(first).site
        if restore:
            say(f"founding the cluster on {first} from the backup {restore[0].name} (edge {edge})")
            out = _vcapp(dc, first, "backup", "restore", str(restore[0]), "--identity", str(restore[1]),
                         "--edge", edge, "--site", site, timeout=600)
        else:
            say(f"founding cluster {CLUSTER_NAME!r} on {first} (edge {dc.topology.host('edge').addr})")
            out = _vcapp(dc, first, "cluster", "init", "--name", CLUSTER_NAME, "--domain", DOMAIN,
                         "--edge", edge, "--site", site)
        mesh_key = re.search(r"mesh key \(secret; shown once\):\s+([0-9a-f]+)", out).group(1)
        join_token = re.search(r"vcjoin_\S+", out).group(0)
        _vcapp(dc, "edge", "edge", "setup", "--mesh-key-file", "-", stdin=mesh_key)
        dc.add_service("edge", EDGE_SERVICE, _edge_command(dc, edge_setup.MESH_UNIT))
    else:
        join_token = ""
    pending = [m for m in machines[1:] if not (dc.host_dir(m) / "data" / "node.json").exists()]
    for m in pending:
        if not join_token:  # one token for the machines still to join (a new token admits one)
            join_token = json.loads(_vcapp(dc, first, "tokens", "join", "create", "--uses", str(len(pending)),
                                           "--json"))["token"]
        say(f"joining {m}")
        _vcapp(dc, m, "node", "join", join_token, "--site", dc.topology.host(m).site)
    login = _login(dc, first) or {}
    for m in machines[1:]:  # an admin at any machine: each talks to its own API
        if not _login(dc, m) and login:
            addr = json.loads((dc.host_dir(m) / "data" / "node.json").read_text())["addr"]
            _vcapp(dc, m, "login", f"http://{addr}:7180", "--token-stdin", stdin=login["token"])
    _start_ingress(dc, first, say, acme)
    proxy = dc.proxy_url
    if proxy:
        say(f"builds reach PyPI, npm and Debian through the simulated internet's proxy {proxy}")
        _set_build_proxy(dc, first, proxy)
    return Platform(admin_token=login.get("token", ""), api_url=login.get("url", ""), first=first)


def _set_build_proxy(dc: DevCluster, first: str, proxy: str) -> None:
    """The cluster setting build.proxy, once the first machine's API answers (it starts with
    the node daemon; on a loaded host its first answers take longer than a request waits)."""
    deadline = time.monotonic() + API_WAIT
    while True:
        try:
            _vcapp(dc, first, "settings", "set", "build.proxy", proxy)
            return
        except DevError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def _start_ingress(dc: DevCluster, first: str, say: Callable[[str], None], acme: Acme | None) -> None:
    """The edge's public HTTPS entry (Caddy with a dev CA or `acme`), once the mesh edge knows
    a machine. It reads its routes with an edge-scoped token: the edge host cannot change the
    cluster."""
    if INGRESS_SERVICE in dc.status_services("edge"):
        return
    token = json.loads(_vcapp(dc, first, "tokens", "admin", "create", "--name", "edge", "--scope", "edge",
                              "--json"))["token"]
    registry = dc.host_dir("edge") / "data" / "mesh" / "edge-registry.json"
    deadline = time.monotonic() + MESH_WAIT
    while not registry.exists():
        if time.monotonic() > deadline:
            raise DevError(f"no machine registered with the mesh edge within {MESH_WAIT:.0f}s; "
                           f"see {dc.host_dir('edge') / 'log' / (EDGE_SERVICE + '.log')}")
        time.sleep(0.5)
    say(f"starting the edge's HTTPS entry for *.{DOMAIN}")
    certs = ["--acme-ca", acme.directory, "--acme-ca-root", str(acme.ca_root)] if acme else ["--dev"]
    _vcapp(dc, "edge", "edge", "setup", "--domain", DOMAIN, *certs, "--token-file", "-", stdin=token)
    dc.add_service("edge", INGRESS_SERVICE, _edge_command(dc, edge_setup.ROUTES_UNIT, acme))


def _edge_command(dc: DevCluster, unit: str, acme: Acme | None = None) -> list[str]:
    """The ExecStart of the edge unit `vcapp edge setup` made (what systemd would boot)."""
    data = dc.host_dir("edge") / "data"
    routes = edge_setup.RoutesOptions(DOMAIN, dev=True) if acme is None else edge_setup.RoutesOptions(
        DOMAIN, acme_ca=acme.directory, acme_ca_root=str(edge_setup.acme_ca_root_path(data)))
    text = edge_setup.units(data, edge_setup.DEFAULT_LISTEN, routes)[unit]
    return service.exec_start_of(text)


def deploy_sample(dc: DevCluster, platform: Platform, say: Callable[[str], None]) -> str:
    """Deploy examples/hello by `git push` from the first machine (once); returns its URL."""
    url = f"https://{SAMPLE_APP}.{DOMAIN}"
    existing = dc.run(platform.first, ["vcapp", "releases", SAMPLE_APP, "--json"])
    if existing.returncode == 0 and json.loads(existing.stdout or "[]"):
        return url
    say("making the python stack image (debootstrap; minutes the first time, cached after)")
    stacks.ensure_archive(STACKS["python"], on_line=lambda line: None)
    if dc.run(platform.first, ["vcapp", "apps", "create", SAMPLE_APP]).returncode != 0:
        say(f"app {SAMPLE_APP} exists already")
    repo = dc.host_dir(platform.first) / "data" / "sample" / SAMPLE_APP
    if not (repo / ".git").exists():
        shutil.copytree(SAMPLE_SOURCE, repo, dirs_exist_ok=True)
        for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "hello"]):
            subprocess.run(["git", "-C", str(repo), "-c", "user.name=vcapp dev", "-c", "user.email=dev@vcapp.test",
                            *args], check=True, capture_output=True)
    say(f"git push of {SAMPLE_APP} (build log follows)")
    # `cluster init` logged the first machine in: git asks `vcapp git-credential`, no token in the URL
    remote = f"{platform.api_url}/git/{SAMPLE_APP}.git"
    push = dc.run(platform.first, ["git", "-C", str(repo), "push", remote, "main"], timeout=PUSH_TIMEOUT)
    for line in push.stderr.splitlines():
        if line.startswith("remote:"):
            say("  " + line)
    if push.returncode != 0:
        raise DevError(f"the sample app's push failed: {push.stderr.strip()[-400:]}")
    return url


def edge_caddy_dir(dc: DevCluster) -> Path:
    """The edge's Caddy workdir: its log, certificate log (router/edge.py CERT_LOG) and storage."""
    return dc.host_dir("edge") / "data" / "edge" / "caddy"


def edge_ca(dc: DevCluster) -> Path:
    """The dev CA certificate clients trust for https://*.apps.test."""
    return dc.host_dir("edge") / "data" / "edge" / "root.crt"
