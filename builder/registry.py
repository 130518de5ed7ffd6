"""The cluster image registry: the distribution registry (`docker-registry serve`) on one
machine, holding every app's release images, reachable at an address:port of the cluster.

Storage is a local directory now; `S3Storage` switches in the s3 driver (SeaweedFS later).
With either, `redirect.disable` is set: the registry serves blobs itself instead of
redirecting machines to pre-signed S3 URLs, which would name an S3 endpoint machines may
not reach. The config is written as JSON, which is YAML too.

Plain HTTP inside the cluster (the mesh encrypts the path): pushes and pulls pass
`--tls-verify=false` explicitly (builder.build.push, `pull_command`); a machine that wants
plain `podman pull` to work gets `registries_conf(address)` as a registries.conf.d drop-in.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from builder import proc

REGISTRY_BIN = "/usr/bin/docker-registry"
DEFAULT_PORT = 5000
READY_TIMEOUT = 20.0  # the registry answers /v2/ well under a second after start; 20 s is broken
READY_POLL = 0.1
PROBE_TIMEOUT = 2.0  # one HTTP probe of /v2/; a registry on the LAN answers in milliseconds


class RegistryError(RuntimeError):
    """The registry could not be started or does not answer; the message says what to check."""


@dataclass(frozen=True)
class FilesystemStorage:
    root: Path

    def driver(self) -> dict:
        return {"filesystem": {"rootdirectory": str(self.root)}}


@dataclass(frozen=True)
class S3Storage:
    """An S3 bucket (SeaweedFS's S3 gateway later). secure=False for plain HTTP endpoints."""

    endpoint: str  # http://host:port
    bucket: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"  # required by the driver, ignored by SeaweedFS
    root: str = "/registry"

    def driver(self) -> dict:
        return {"s3": {
            "regionendpoint": self.endpoint, "bucket": self.bucket, "region": self.region,
            "accesskey": self.access_key, "secretkey": self.secret_key,
            "secure": self.endpoint.startswith("https://"), "v4auth": True, "rootdirectory": self.root,
        }}


def config(address: str, storage: FilesystemStorage | S3Storage, secret: str | None = None) -> dict:
    """The registry's configuration (version 0.1 format) for `address` (host:port).

    `secret` signs upload state: registries sharing one S3 bucket behind one name need the
    same one (keep it in cluster state); a lone registry may let it be random."""
    return {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": True}},
        "storage": {
            **storage.driver(),
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
            "redirect": {"disable": True},
            "maintenance": {"uploadpurging": {"enabled": True, "age": "168h", "interval": "24h", "dryrun": False}},
        },
        "http": {"addr": address, "secret": secret or secrets.token_hex(16),
                 "headers": {"X-Content-Type-Options": ["nosniff"]}},
        "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
    }


def write_config(path: Path, address: str, storage: FilesystemStorage | S3Storage,
                 secret: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config(address, storage, secret), indent=2) + "\n")
    path.chmod(0o600)  # may hold S3 keys
    return path


def registries_conf(address: str, mirrors: list[str] | tuple[str, ...] = ()) -> str:
    """A registries.conf.d entry that lets podman/buildah use `address` over plain HTTP.

    With `mirrors`, a pull of <address>/<path> tries <mirror>/<path> on each of them in
    order first and `address` itself last: an image whose registry died is still pulled from
    a machine that holds a copy."""
    text = f'[[registry]]\nlocation = "{address}"\ninsecure = true\n'
    for mirror in mirrors:
        text += f'[[registry.mirror]]\nlocation = "{mirror}"\ninsecure = true\n'
    return text


def pull_command(image: str) -> list[str]:
    """How a machine pulls a release image from the cluster registry (plain HTTP)."""
    return ["podman", "pull", "--tls-verify=false", image]


def serve_command(config_path: Path) -> list[str]:
    """The registry's command line. AWS_CA_BUNDLE is dropped: the registry's S3 client
    panics on it ("unsupported transport") and plain-HTTP SeaweedFS needs no CA anyway."""
    return ["env", "-u", "AWS_CA_BUNDLE", REGISTRY_BIN, "serve", str(config_path)]


def answers(address: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a registry answers the v2 API at address (probe from this namespace)."""
    try:
        with urllib.request.urlopen(f"http://{address}/v2/", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start(address: str, storage: FilesystemStorage | S3Storage, config_path: Path,
          spawn: proc.Spawn | None = None, log: Path | None = None,
          probe=None, secret: str | None = None) -> subprocess.Popen:
    """Start the registry and wait until it answers; return its process.

    `probe(address) -> bool` checks readiness from where the registry listens (default: an
    HTTP GET from this process, right when spawn is local)."""
    write_config(config_path, address, storage, secret)
    if isinstance(storage, FilesystemStorage):
        storage.root.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        registry = (spawn or proc.local())(serve_command(config_path), stdin=subprocess.DEVNULL,
                                           stdout=out, stderr=subprocess.STDOUT)
    finally:
        if log:
            out.close()
    wait_ready(address, registry, probe or answers)
    return registry


def wait_ready(address: str, registry: subprocess.Popen, probe) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if registry.poll() is not None:
            raise RegistryError(f"the registry exited ({registry.returncode}) before answering on {address}: "
                                "read its log; is the address taken or not on this machine?")
        if probe(address):
            return
        time.sleep(READY_POLL)
    proc.kill_group(registry)
    raise RegistryError(f"the registry did not answer on http://{address}/v2/ within {READY_TIMEOUT:.0f} s")


def stop(registry: subprocess.Popen) -> None:
    proc.kill_group(registry)
