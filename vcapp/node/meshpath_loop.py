"""Every machine's mesh paths for the dashboard: every MESH_EVERY_S, copies the path to each
mesh peer from the mesh daemon's status file to /vc/meshpaths/<node> (bound to the lease),
only when a path changes."""

from __future__ import annotations

import time

from mesh import status as mesh_status
from vcapp.node.harness import Every
from vcapp.state import keys
from vcapp.state.store import put_op

MESH_EVERY_S = 10.0  # a path change shows on the dashboard within this long


def mesh_paths(status: dict, previous: dict, now: float) -> dict:
    """{peer: {path, since}} from the mesh daemon's status; `since` kept while the path holds."""
    out = {}
    for peer in status.get("peers", []):
        name, path = peer.get("node"), peer.get("path")
        if not name or not path:
            continue
        old = previous.get(name) or {}
        out[name] = {"path": path, "since": old.get("since", now) if old.get("path") == path else now,
                     "rtt_ms": peer.get("rtt_ms")}
    return out


def to_write(paths: dict, written: dict, written_lease: int, lease: int) -> bool:
    """Whether `paths` must be written (pure): a peer's path changed, or the lease did (the
    record goes with the lease it was written with)."""
    same = {k: v["path"] for k, v in paths.items()} == {k: v["path"] for k, v in written.items()}
    return not same or written_lease != lease


class MeshPathLoop:
    name = "meshpaths"

    def __init__(self, ctx) -> None:
        self.every = Every(MESH_EVERY_S)
        self.written: dict = {}
        self.lease = 0

    def step(self, ctx) -> None:
        if not ctx.cfg.mesh or not self.every.due():
            return
        try:
            status = mesh_status.read()
        except (FileNotFoundError, ValueError):
            return
        paths = mesh_paths(status, self.written, time.time())
        if not to_write(paths, self.written, self.lease, ctx.lease):
            return
        ctx.store.txn([], [put_op(keys.meshpaths(ctx.cfg.name), paths, lease=ctx.lease)])
        self.written, self.lease = paths, ctx.lease
