"""The edge's record of registered machines: node -> (mesh IP, WireGuard public key, LAN endpoints),
and the mesh IPs the cluster has revoked.

A mesh IP or a public key belongs to one node at a time; the same node may register again
(with a new key after a reinstall). Persisted as JSON so a restarted edge keeps its peers.

Revoked mesh IPs (machines removed from the cluster) come from the control plane, which the
mesh does not ask itself: whoever on the edge host reads the cluster's view (`vcapp edge run`,
vcapp/edge/daemon.py) writes them to REVOKED_FILE next to the registry, a JSON list of IPs,
and the edge daemon (mesh/edge.py) reads it every ENDPOINT_POLL.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

REVOKED_FILE = "edge-revoked.json"


def revoked_path(registry_path: Path) -> Path:
    return registry_path.parent / REVOKED_FILE


def read_revoked(path: Path) -> frozenset[str]:
    """The revoked mesh IPs in `path`; empty if there is no file (nothing revoked yet)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return frozenset()
    if not isinstance(data, list) or not all(isinstance(ip, str) for ip in data):
        raise ValueError(f"{path}: expected a JSON list of mesh IPs")
    return frozenset(data)


def write_revoked(path: Path, ips: list[str]) -> bool:
    """Write the revoked mesh IPs (atomically); True if they changed."""
    ips = sorted(set(ips))
    try:
        if sorted(read_revoked(path)) == ips:
            return False
    except ValueError:
        pass  # a damaged file is replaced
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ips))
    os.replace(tmp, path)
    return True


class Conflict(ValueError):
    """A registration that would take another node's mesh IP or key."""


@dataclass(frozen=True)
class Registration:
    node: str
    mesh_ip: str
    public_key: str  # base64
    lan_endpoints: tuple[str, ...] = field(default_factory=tuple)


class Registry:
    def __init__(self, path: Path | None = None):
        self.path = path
        self.lock = threading.Lock()
        self.nodes: dict[str, Registration] = {}
        if path and path.exists():
            for item in json.loads(path.read_text()):
                reg = Registration(item["node"], item["mesh_ip"], item["public_key"], tuple(item["lan_endpoints"]))
                self.nodes[reg.node] = reg

    def register(self, reg: Registration) -> bool:
        """Record `reg`; True if anything changed. Raises Conflict if another node holds its IP or key."""
        with self.lock:
            for other in self.nodes.values():
                if other.node == reg.node:
                    continue
                if other.mesh_ip == reg.mesh_ip:
                    raise Conflict(f"mesh IP {reg.mesh_ip} is bound to node {other.node!r}'s key; "
                                   "ask the control plane for a free address")
                if other.public_key == reg.public_key:
                    raise Conflict(f"this WireGuard key is already registered by node {other.node!r}")
            if self.nodes.get(reg.node) == reg:
                return False
            self.nodes[reg.node] = reg
            self._save()
            return True

    def remove(self, node: str) -> bool:
        """Forget `node`; True if it was registered."""
        with self.lock:
            if self.nodes.pop(node, None) is None:
                return False
            self._save()
            return True

    def all(self) -> list[Registration]:
        with self.lock:
            return sorted(self.nodes.values(), key=lambda r: r.node)

    def get(self, node: str) -> Registration | None:
        with self.lock:
            return self.nodes.get(node)

    def _save(self) -> None:
        if not self.path:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(r) for r in self.nodes.values()], indent=2))
        os.replace(tmp, self.path)
