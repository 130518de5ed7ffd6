"""This machine: its settings (written at `cluster init` / `node join`, kept on its disk), its
directories, and the secrets it derives from the cluster key.

    <data dir>/node.json    {cluster, name, site, addr, api_port, labels,
                             etcd: {member, state: new|existing, initial_cluster},
                             endpoints: [etcd client urls]}

The data dir is $VCAPP_DATA_DIR (each simulated machine has its own) or /var/lib/vcapp; the
run dir (pid files, status) is $VCAPP_RUN_DIR or /run/vcapp.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from builder import registry

API_PORT = 7180
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380


def data_dir() -> Path:
    return Path(os.environ.get("VCAPP_DATA_DIR", "/var/lib/vcapp"))


def run_dir() -> Path:
    return Path(os.environ.get("VCAPP_RUN_DIR", "/run/vcapp"))


def kept_logs_dir() -> Path:
    """Where the runtime keeps removed containers' output (runtime/keptlogs.py)."""
    return data_dir() / "runtime" / "kept-logs"


def config_path() -> Path:
    return data_dir() / "node.json"


def cluster_key_path() -> Path:
    return data_dir() / "keys" / "cluster.key"


def cluster_key() -> bytes:
    """The cluster's 32-byte secret: encrypts app secrets in etcd, derives the mesh key.
    Every machine has it on disk (mode 0600); it is never stored in etcd."""
    return base64.b64decode(cluster_key_path().read_text())


def save_cluster_key(key: bytes) -> None:
    path = cluster_key_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(key).decode())


def mesh_credential_path() -> Path:
    return data_dir() / "keys" / "mesh.credential"


def derive(key: bytes, purpose: str) -> bytes:
    """A key for one purpose (e.g. "mesh", "sessions", "secrets") from the cluster key."""
    return hmac.new(key, purpose.encode(), hashlib.sha256).digest()


def derived_key(purpose: str) -> bytes:
    return derive(cluster_key(), purpose)


def machine_secret(key: bytes) -> str:
    """The bearer token machines call each other's API with (builds, stacks): derived from
    the cluster key, so every machine has it and nothing else does."""
    return derive(key, "machine-api").hex()


REGISTRY_USER = "vcapp-machine"


def registry_credential() -> registry.Credential:
    """The machines' registry credential. Its own derivation: the password sits in the auth
    file, and leaking it must not open the machine API (machine_secret)."""
    return registry.Credential(REGISTRY_USER, derived_key("registry-machine").hex())


def registry_auth_file() -> Path:
    """Where podman/buildah on this machine find the registry credential (`--authfile`)."""
    return run_dir() / "registry" / "auth.json"


@dataclass
class EtcdRole:
    member: bool = False
    state: str = "new"  # how a member's etcd first starts: new cluster, or join an existing one
    initial_cluster: str = ""


@dataclass
class MeshRole:
    """This machine on the WireGuard mesh: its overlay address and where the edge is."""

    ip: str
    coord_url: str
    interface: str = "vcmesh0"


@dataclass
class NodeConfig:
    cluster: str
    name: str
    site: str
    addr: str
    api_port: int = API_PORT
    labels: dict = field(default_factory=dict)
    etcd: EtcdRole = field(default_factory=EtcdRole)
    endpoints: list[str] = field(default_factory=list)
    mesh: MeshRole | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.addr}:{self.api_port}"

    @property
    def etcd_client_url(self) -> str:
        return f"https://{self.addr}:{ETCD_CLIENT_PORT}"

    @property
    def etcd_peer_url(self) -> str:
        return f"https://{self.addr}:{ETCD_PEER_PORT}"

    def store_endpoints(self) -> list[str]:
        """Where to reach etcd: our own member first (it answers fastest), then the others."""
        own = [self.etcd_client_url] if self.etcd.member else []
        return own + [e for e in self.endpoints if e not in own]

    def save(self, path: Path | None = None) -> None:
        path = path or config_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path | None = None) -> NodeConfig | None:
        path = path or config_path()
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["etcd"] = EtcdRole(**data.get("etcd", {}))
        if data.get("mesh"):
            data["mesh"] = MeshRole(**data["mesh"])
        return cls(**data)
