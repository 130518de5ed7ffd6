"""The cluster as the placer sees it: one consistent read of etcd projected into
`placer.model.ClusterState`, with the entries (and so the revisions) a placement transaction
guards on. Used by the placer loop (vcapp/node/placer_loop.py) and by a push choosing where
to build (vcapp/deploy/remote_build.py)."""

from __future__ import annotations

from placer.model import ClusterState
from vcapp.state import apps, keys, membership, peerwatch
from vcapp.state.store import Entry, Store


class Snapshot:
    """What one pass read, with the revisions the transaction guards on."""

    def __init__(self, store: Store):
        self.nodes = {name: _placer_node(record) for name, record in membership.node_records(store).items()}
        self.alive: dict[str, Entry] = {keys.name_of(e.key, keys.ALIVE): e for e in store.list(keys.ALIVE)}
        self.apps: dict[str, Entry] = {keys.name_of(e.key, keys.APPS): e for e in store.list(keys.APPS)}
        self.assign: dict[str, Entry] = {e.key: e for e in store.list(keys.ASSIGN)}
        self.pending: dict[str, Entry] = {keys.name_of(e.key, keys.PENDING): e for e in store.list(keys.PENDING)}
        self.drained = set(membership.drained_machines(store))
        self.unreachable = peerwatch.unreachable(store, set(self.alive))

    def state(self, now: float) -> ClusterState:
        specs = {name: _placer_spec(e.value) for name, e in self.apps.items()}
        up_since = {n: (e.value or {}).get("at") for n, e in self.alive.items()}
        return ClusterState.from_json(self.nodes, up_since, specs, [e.value for e in self.assign.values()], now,
                                      self.drained, set(self.unreachable))

    def gone(self, node: str) -> bool:
        """Dead (lease expired) or confirmed unreachable: a move off it is a failover."""
        return node not in self.alive or node in self.unreachable


def _placer_node(record: dict) -> dict:
    """CPU is compressible and the measured figure is the load average (noisy on a shared
    machine, 0 on a busy one): place CPU by requests against totals only. Memory and disk
    keep their measured free figures: those must never be overcommitted."""
    return {k: v for k, v in record.items() if k != "free_cpus"}


def _placer_spec(spec: dict) -> dict:
    out = dict(spec, release=apps.runtime_release(spec), count=spec.get("count", 1) if spec.get("image") else 0)
    if not spec.get("image") and spec.get("processes"):
        out["processes"] = {k: dict(v, count=0) for k, v in spec["processes"].items()}
    return out
