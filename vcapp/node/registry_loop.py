"""Node loop: keep this machine's image registry running, and let podman pull from every
machine's registry over plain HTTP.

- The distribution registry (`docker-registry serve`) runs as a child of the node daemon on
  <addr>:5000 with its storage under <data dir>/registry (builder/registry.py writes its
  config). Git pushes received here build and push to it (vcapp/deploy/pipeline.py); other machines
  pull the image from it by the full reference recorded in the release.
- Plain HTTP inside the cluster: podman refuses it unless told. This loop writes a
  registries.conf.d drop-in listing every cluster machine's registry as `insecure`, in
  ~/.config/containers/registries.conf.d/ of the daemon's user (containers/image reads
  that directory for every user, root included, beside /etc/containers/registries.conf.d;
  each simulated machine has its own HOME). The runtime's `podman run` pulls through it, so
  the runtime needs no `--tls-verify=false`. $VCAPP_REGISTRIES_CONF_DIR overrides the place.

Storage is local, so a deploy copies each release image to up to two more machines'
registries (vcapp/deploy/pipeline.py). The drop-in makes every machine's registry a mirror of every
other: a pull of <builder>:5000/apps/x:3 tries this machine's own registry first, then the
other live machines', and the builder's last, so the image is found while any copy lives.
Machines that are down are left out of the mirrors (a dead mirror costs a connect timeout
on every pull); the drop-in is rewritten as soon as the live set changes.

Only machines use the registries: every request (pull, push, delete, even /v2/) needs basic
auth as machine.REGISTRY_USER, whose password is derived from the cluster key (`machine.registry_credential`), which
only machines hold. The registry checks it against <data dir>/registry/htpasswd (bcrypt);
podman and buildah read it from `registry_auth_file()` (<run dir>/registry/auth.json, 0600, naming
every cluster registry, as mirrors are pulled from with their own address's credentials),
passed as `--authfile` by the runtime (runtime_loop.py) and the builds (vcapp/deploy/pipeline.py).
The same loop writes what `vcapp registries` set (vcapp/state/registries.py): a second drop-in,
REGISTRIES_DROPIN_NAME (each registry's mirror, plain HTTP where allowed), and those
registries' credentials in the same auth file, which builds pull their base images with
(builder/images.py): one writer per file.
Basic auth over plain HTTP carries the password in every request. The registry listens on
the machine's cluster address only (NodeConfig.addr): on a cluster with a mesh that is its
WireGuard address, so between machines the password (and every image) travels encrypted and
authenticated by WireGuard, which is why no TLS is added here. A cluster made without a mesh
(`cluster init` without --edge, machines on one LAN) sends it in clear on that LAN.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from builder import registry
from vcapp.machine import derived_key, registry_auth_file, registry_credential
from vcapp.node.children import Child
from vcapp.node.harness import Every
from vcapp.state import membership, registries

log = logging.getLogger("vcapp.node")

PORT = registry.DEFAULT_PORT
DROPIN_NAME = "50-vcapp-cluster.conf"
REGISTRIES_DROPIN_NAME = "51-vcapp-registries.conf"  # `vcapp registries`: mirrors, plain HTTP
# How often the live machines are read for the mirrors: a failover pulls right after a death
# is noticed, so this must be short next to the few seconds a failover takes.
REFRESH_EVERY_S = 1.0


def dropin_dir() -> Path:
    env = os.environ.get("VCAPP_REGISTRIES_CONF_DIR")
    return Path(env) if env else Path.home() / ".config" / "containers" / "registries.conf.d"


def dropin_text(addresses: list[str], own: str | None = None, live: list[str] | None = None) -> str:
    """The drop-in: each cluster registry usable over plain HTTP (the mesh encrypts the path),
    each other machine's mirrored by `own` first and then the other `live` registries."""
    head = "# Written by the vcapp node daemon (vcapp/node/registry_loop.py): cluster image registries.\n"
    live_set = set(live or ())
    entries = []
    for address in sorted(set(addresses)):
        mirrors = []
        if address != own:
            mirrors = ([own] if own else []) + sorted(live_set - {address, own})
        entries.append(registry.registries_conf(address, mirrors))
    return head + "\n".join(entries)


def cluster_registries(records: dict[str, dict], alive: set[str], own: str) -> tuple[list[str], list[str]]:
    """Every cluster registry's address (`own` first) and the live machines' ones (pure)."""
    addresses = [own] + [f"{rec['addr']}:{PORT}" for rec in records.values() if rec.get("addr")]
    live = [f"{rec['addr']}:{PORT}" for name, rec in records.items() if rec.get("addr") and name in alive]
    return addresses, live


def http_secret() -> str:
    """Stable across restarts (upload state stays valid); derived, so never stored."""
    try:
        return derived_key("registry-http").hex()
    except OSError:
        return ""  # no cluster key on disk (should not happen in a cluster): the registry picks one


class RegistryLoop:
    name = "registry"

    def __init__(self, ctx):
        self.child = Child("registry", ctx.base / "log" / "registry.log")
        self.config_path = ctx.base / "registry" / "config.yml"
        self.htpasswd = ctx.base / "registry" / "htpasswd"
        self.refresh = Every(REFRESH_EVERY_S)  # begun by a refresh that worked; a failed one is retried next tick
        self.written = ""
        self.auth_written = ""

    def step(self, ctx) -> None:
        address = f"{ctx.cfg.addr}:{PORT}"
        self._configure(ctx.base, address)
        self.child.ensure(registry.serve_command(self.config_path))
        if self.refresh.ready():
            self._dropin(ctx.store, address)
            self.refresh.mark()

    def _configure(self, base: Path, address: str) -> None:
        if not registry_auth_file().exists():  # the run dir is emptied at boot; this machine's own registry first
            self._auth([address])
        storage = registry.FilesystemStorage(base / "registry" / "data")
        wanted = registry.config(address, storage, http_secret() or None)
        if self.config_path.exists() and self.htpasswd.exists() and self.written == address:
            return
        storage.root.mkdir(parents=True, exist_ok=True)
        registry.write_htpasswd(self.htpasswd, registry_credential())
        registry.write_config(self.config_path, address, storage, wanted["http"]["secret"], self.htpasswd)
        self.written = address
        if self.child.running():
            self.child.stop()  # restart with the new config on this same step

    def _dropin(self, store, own: str) -> None:
        records = membership.node_records(store)
        addresses, live = cluster_registries(records, membership.alive_machines(store), own)
        configured = registries.records(store)
        self._auth(addresses, configured)
        if _write(dropin_dir() / DROPIN_NAME, dropin_text(addresses, own, live)):
            log.info("registries drop-in lists %d cluster registries", len(set(addresses)))
        if _write(dropin_dir() / REGISTRIES_DROPIN_NAME, registries.dropin_text(configured)):
            log.info("registries drop-in lists %d configured registries", len(configured))

    def _auth(self, addresses: list[str], configured: list[dict] | None = None) -> None:
        """The auth file names every registry in `addresses` and each configured registry with
        a login (written when either changes; passwords unsealed only then)."""
        logins = [[r["host"], r.get("mirror"), r.get("username"), r.get("password")] for r in configured or ()]
        wanted = ",".join(sorted(set(addresses))) + json.dumps(logins)
        if wanted == self.auth_written and registry_auth_file().exists():
            return
        others = registries.credentials(configured or [])
        registry.write_auth_file(registry_auth_file(), addresses, registry_credential(), others)
        self.auth_written = wanted
        log.info("registry auth file %s names %d cluster registries and %d others", registry_auth_file(),
                 len(set(addresses)), len(others))


def _write(path: Path, text: str) -> bool:
    """Replace `path` with `text` when it differs (atomically); whether it was written."""
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True
