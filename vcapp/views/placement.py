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
        self.alive: dict[str, Entry] = {keys.name_of(e.key, keys.ALIVE): e for e in store.list(keys.ALIVE)}
        self.apps: dict[str, Entry] = {keys.name_of(e.key, keys.APPS): e for e in store.list(keys.APPS)}
        built = built_images([e.value for e in self.apps.values()])
        self.nodes = {name: _placer_node(record, built.get(name, ()))
                      for name, record in membership.node_records(store).items()}
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


def built_images(specs: list[dict]) -> dict[str, set[str]]:
    """machine -> the app images its own image storage holds because it built them (the app
    spec's `built_on`): an instance started there needs no pull, which is most of the time
    from a push to a serving first release (Kubernetes' ImageLocality scores alike)."""
    held: dict[str, set[str]] = {}
    for spec in specs:
        if isinstance(spec, dict) and spec.get("built_on") and spec.get("image"):
            held.setdefault(spec["built_on"], set()).add(spec["image"])
    return held


def _placer_node(record: dict, images: set[str] | tuple = ()) -> dict:
    """CPU is compressible and the measured figure is the load average (noisy on a shared
    machine, 0 on a busy one): place CPU by requests against totals only. Memory and disk
    keep their measured free figures: those must never be overcommitted. `images`: what the
    machine holds already (the placer prefers it among equals)."""
    return dict({k: v for k, v in record.items() if k != "free_cpus"}, images=sorted(images))


def _placer_spec(spec: dict) -> dict:
    out = dict(spec, release=apps.runtime_release(spec), count=spec.get("count", 1) if spec.get("image") else 0)
    if not spec.get("image") and spec.get("processes"):
        out["processes"] = {k: dict(v, count=0) for k, v in spec["processes"].items()}
    return out
