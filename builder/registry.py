"""The cluster image registry: the distribution registry (`docker-registry serve`) on one
machine, holding every app's release images, reachable at an address:port of the cluster.

Storage is a local directory; every release image is copied to other machines' registries
instead (vcapp/deploy/pipeline.py). `redirect.disable` is set: the registry serves blobs
itself, never redirects to a storage backend's URL. The config is written as JSON, which is
YAML too.

Plain HTTP inside the cluster (the mesh encrypts the path): pushes and pulls pass
`--tls-verify=false` explicitly (builder.build.push, `pull_command`); a machine that wants
plain `podman pull` to work gets `registries_conf(address)` as a registries.conf.d drop-in.

Authentication (`htpasswd=` in `config`/`start`): every request, /v2/ and pulls included,
needs HTTP basic auth as a user of the htpasswd file (`write_htpasswd`, bcrypt). The cluster
has one user, the machines' (`Credential`); podman and buildah find its password in an
auth file (`write_auth_file`, containers-auth.json(5), mode 0600) passed as `--authfile`,
never on a command line. Basic auth over plain HTTP sends the password on every request:
acceptable on loopback and on a WireGuard mesh address (WireGuard encrypts and
authenticates every packet between machines), which is where the cluster's registries
listen (vcapp/node/registry_loop.py).

Deleting an app's images (`delete_repository`, when the app is destroyed): every manifest of
apps/<app> is deleted by digest (its tags go with it) and so are the repository's links to
its layers and config, so nothing of the app can be pulled through apps/<app> any more. The
blob files themselves stay on disk until `docker-registry garbage-collect` runs, which is not
done here: the distribution docs require the registry to be stopped or read-only while it
runs (it would delete the blobs of a push in flight, which has no manifest yet), and every
machine's registry takes pushes and copies at any time. A blob is content-addressed and
reachable only through a repository link, so what stays is disk space, not access.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from builder import proc

REGISTRY_BIN = "/usr/bin/docker-registry"
DEFAULT_PORT = 5000
READY_TIMEOUT = 20.0  # the registry answers /v2/ well under a second after start; 20 s is broken
READY_POLL = 0.1
PROBE_TIMEOUT = 2.0  # one HTTP probe of /v2/; a registry on the LAN answers in milliseconds
REALM = "vcapp cluster registry"
# The registry checks the bcrypt hash on every request (a push makes dozens). The password is
# a 256-bit derived key, so stretching adds nothing against guessing: the cheapest cost
# bcrypt allows keeps a request's check at ~1.6 ms on this project's test host (150 ms at
# htpasswd's default cost 10, seconds over a push's dozens of requests).
BCRYPT_COST = 4


class RegistryError(RuntimeError):
    """The registry could not be started or does not answer; the message says what to check."""


@dataclass(frozen=True)
class FilesystemStorage:
    root: Path

    def driver(self) -> dict:
        return {"filesystem": {"rootdirectory": str(self.root)}}


@dataclass(frozen=True)
class Credential:
    """A registry user and its password. repr() leaves the password out (logs, tracebacks)."""

    user: str
    password: str

    def __repr__(self) -> str:
        return f"Credential(user={self.user!r}, password=<{len(self.password)} chars>)"


def bcrypt_hash(password: str, cost: int = BCRYPT_COST) -> str:
    """`password` hashed with bcrypt ($2b$, what the registry's htpasswd reads)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()


def write_htpasswd(path: Path, credential: Credential) -> Path:
    """The registry's htpasswd file with `credential` as its only user (mode 0600)."""
    if ":" in credential.user or "\n" in credential.user + credential.password:
        raise ValueError("a registry user name has no ':' and neither part has a newline")
    _write_private(path, f"{credential.user}:{bcrypt_hash(credential.password)}\n")
    return path


def _basic(credential: Credential) -> str:
    return base64.b64encode(f"{credential.user}:{credential.password}".encode()).decode()


def auth_json(addresses: list[str] | tuple[str, ...], credential: Credential,
              others: dict[str, Credential] | None = None) -> str:
    """containers-auth.json(5) text giving `credential` for each registry address (host:port),
    and each of `others` (location: credential, e.g. docker.io) its own; the addresses win."""
    auths = {a: {"auth": _basic(c)} for a, c in (others or {}).items()}
    auths.update({a: {"auth": _basic(credential)} for a in addresses})
    return json.dumps({"auths": dict(sorted(auths.items()))}, indent=2) + "\n"


def write_auth_file(path: Path, addresses: list[str] | tuple[str, ...], credential: Credential,
                    others: dict[str, Credential] | None = None) -> Path:
    """Write the auth file podman/buildah/skopeo read with `--authfile path` (mode 0600,
    replaced atomically: a pull reading it meanwhile sees the old or the new one whole)."""
    _write_private(path, auth_json(addresses, credential, others))
    return path


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def config(address: str, storage: FilesystemStorage, secret: str | None = None,
           htpasswd: Path | None = None) -> dict:
    """The registry's configuration (version 0.1 format) for `address` (host:port).

    `secret` signs upload state; stable across restarts keeps an upload in progress valid.
    `htpasswd`: every request needs basic auth as a user of that file (`write_htpasswd`);
    without it the registry answers anyone who reaches `address`."""
    auth = {"auth": {"htpasswd": {"realm": REALM, "path": str(htpasswd)}}} if htpasswd else {}
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
        **auth,
    }


def write_config(path: Path, address: str, storage: FilesystemStorage,
                 secret: str | None = None, htpasswd: Path | None = None) -> Path:
    _write_private(path, json.dumps(config(address, storage, secret, htpasswd), indent=2) + "\n")
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


def pull_command(image: str, authfile: Path | None = None) -> list[str]:
    """How a machine pulls a release image from the cluster registry (plain HTTP), with the
    credentials of `authfile` when the registry wants them."""
    return ["podman", "pull", "--tls-verify=false", *(["--authfile", str(authfile)] if authfile else []), image]


def serve_command(config_path: Path) -> list[str]:
    """The registry's command line. AWS_CA_BUNDLE is dropped: the registry's S3 client
    panics on it ("unsupported transport") and plain-HTTP SeaweedFS needs no CA anyway."""
    return ["env", "-u", "AWS_CA_BUNDLE", REGISTRY_BIN, "serve", str(config_path)]


def answers(address: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a registry answers the v2 API at address (probe from this namespace): 200, or
    401 with the registry's API version header when it wants credentials."""
    try:
        with urllib.request.urlopen(f"http://{address}/v2/", timeout=timeout) as resp:
            return resp.status == 200
    except urllib.error.HTTPError as e:
        return e.code == 401 and e.headers.get("Docker-Distribution-API-Version") == "registry/2.0"
    except (urllib.error.URLError, OSError):
        return False


MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json"))


def _call(address: str, credential: Credential | None, method: str, path: str,
          timeout: float = PROBE_TIMEOUT * 5) -> tuple[int, dict, bytes]:
    """One registry API request: (status, headers, body); 4xx/5xx are answers, not errors."""
    headers = {"Accept": MANIFEST_TYPES}
    if credential:
        headers["Authorization"] = f"Basic {_basic(credential)}"
    req = urllib.request.Request(f"http://{address}{path}", method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
    except (urllib.error.URLError, OSError) as e:
        raise RegistryError(f"the registry at {address} does not answer ({e}); is that machine up?") from None


def manifest_status(address: str, credential: Credential | None, repository: str, reference: str) -> int:
    """HTTP status of a HEAD of manifest `reference` (tag or digest): 200 there, 404 gone."""
    return _call(address, credential, "HEAD", f"/v2/{repository}/manifests/{reference}")[0]


def repository_digests(address: str, credential: Credential | None, repository: str) -> list[str]:
    """The manifest digests the repository's tags point at (empty when it has none)."""
    status, _, body = _call(address, credential, "GET", f"/v2/{repository}/tags/list")
    if status == 404:
        return []
    if status != 200:
        raise RegistryError(f"the registry at {address} answered {status} listing the tags of {repository}")
    found = []
    for tag in json.loads(body or b"{}").get("tags") or []:
        status, headers, _ = _call(address, credential, "HEAD", f"/v2/{repository}/manifests/{tag}")
        digest = {k.lower(): v for k, v in headers.items()}.get("docker-content-digest")
        if status == 200 and digest and digest not in found:
            found.append(digest)
    return found


def delete_repository(address: str, credential: Credential | None, repository: str,
                      digests: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Delete every manifest of `repository` (those its tags name, and `digests`) with the
    repository's links to their layers and config. Returns the manifest digests deleted;
    one that is not there is skipped. Blobs stay on disk until garbage collection (see top)."""
    deleted = []
    for digest in dict.fromkeys([*digests, *repository_digests(address, credential, repository)]):
        status, _, body = _call(address, credential, "GET", f"/v2/{repository}/manifests/{digest}")
        if status == 404:
            continue
        if status != 200:
            raise RegistryError(f"the registry at {address} answered {status} for {repository}@{digest}")
        manifest = json.loads(body or b"{}")
        blobs = [d["digest"] for d in [manifest.get("config") or {}, *(manifest.get("layers") or [])] if d.get("digest")]
        status = _call(address, credential, "DELETE", f"/v2/{repository}/manifests/{digest}")[0]
        if status not in (202, 404):
            raise RegistryError(f"the registry at {address} answered {status} to deleting {repository}@{digest}")
        for blob in blobs:
            status = _call(address, credential, "DELETE", f"/v2/{repository}/blobs/{blob}")[0]
            if status not in (202, 404):
                raise RegistryError(f"the registry at {address} answered {status} to deleting blob {blob} "
                                    f"of {repository}")
        deleted.append(digest)
    return deleted


def start(address: str, storage: FilesystemStorage, config_path: Path,
          spawn: proc.Spawn | None = None, log: Path | None = None,
          probe=None, secret: str | None = None, htpasswd: Path | None = None) -> subprocess.Popen:
    """Start the registry and wait until it answers; return its process.

    `probe(address) -> bool` checks readiness from where the registry listens (default: an
    HTTP GET from this process, right when spawn is local). `htpasswd`: see `config`."""
    write_config(config_path, address, storage, secret, htpasswd)
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
