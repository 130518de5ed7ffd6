"""The consistency guard: at most one machine mounts an app's volume for writing.

SeaweedFS lets any number of `weed mount`s write the same path; two instances of an app
writing one SQLite file from two machines would corrupt it. So a machine takes the
volume's *writer* key before mounting it for an instance, and gives it up after unmounting.

Backed by etcd (the control plane supplies the store; this module holds the rules):

    key    /vc/storage/writer/<app>/<volume>
    value  {"node": "<machine>", "instance": "<instance id>"}
    lease  the node's liveness lease (the one behind /vc/alive/<node>, TTL of a few
           seconds): when the node dies or is cut off, etcd deletes the key with its lease,
           and the volume is free for the machine the placer moves the instance to.

    acquire  one etcd transaction:
             if   version(key) == 0                      -> put(key, me, lease=my lease)   granted
             elif value(key).node == me (same instance)  -> nothing to do                  granted
             else                                        -> refused: WriterConflict(holder)
    release  txn: if value(key).node == me -> delete(key)

Fencing: the key vanishes when the old node's lease expires, but a partitioned node may
still be running its instance. The runtime's self-fencing closes that gap: a node that
cannot renew its lease stops instances owning volumes *before* the lease's TTL runs out
(stop at TTL minus a margin), so by the time another node can take the key the old writer
has stopped. Stopping the app is not enough: its volume's weed mount goes too
(storage.mount.stop_mount), or a flush it still retries lands after the new owner's writes,
and an app blocked in that flush cannot even be killed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from storage.host import Host, StorageError
from storage.mount import mount_volume
from storage.plan import ClusterPlan


class WriterConflict(StorageError):
    """Another machine holds the volume for writing."""

    def __init__(self, app: str, volume: str, holder: dict):
        self.holder = holder
        super().__init__(
            f"volume {app}/{volume} is held for writing by {holder.get('node')} "
            f"(instance {holder.get('instance')}); it is freed when that machine releases it or its "
            "lease expires — the placer must stop that instance first")


@dataclass(frozen=True)
class Decision:
    granted: bool
    write: bool  # grant needs a put (the key is absent)
    holder: dict | None


def writer_key(app: str, volume: str) -> str:
    """The name of app/volume's writer record in a WriterStore; the store places it in its
    own key space (the control plane's etcd: vcapp/state/keys.py storage_writer)."""
    return f"{app}/{volume}"


def decide(current: dict | None, node: str, instance: str) -> Decision:
    """Pure rule: may `node` (for `instance`) write the volume whose writer record is `current`?"""
    if current is None:
        return Decision(granted=True, write=True, holder=None)
    if current.get("node") == node and current.get("instance") == instance:
        return Decision(granted=True, write=False, holder=current)
    return Decision(granted=False, write=False, holder=current)


class WriterStore(Protocol):
    """What the control plane provides (etcd): read a key, and put it only if absent,
    attached to the calling node's lease. Both in one transaction on the etcd side."""

    def get(self, key: str) -> str | None: ...

    def put_if_absent(self, key: str, value: str) -> bool: ...

    def delete_if_equal(self, key: str, value: str) -> bool: ...


def acquire_writer(store: WriterStore, app: str, volume: str, node: str, instance: str) -> dict:
    """Take the writer key of app/volume for node/instance. Raises WriterConflict if held."""
    return take_writer(store, app, volume, node, instance)[0]


def take_writer(store: WriterStore, app: str, volume: str, node: str, instance: str) -> tuple[dict, bool]:
    """acquire_writer, and whether the key was taken just now (not already ours)."""
    key = writer_key(app, volume)
    raw = store.get(key)
    decision = decide(json.loads(raw) if raw else None, node, instance)
    if not decision.granted:
        raise WriterConflict(app, volume, decision.holder or {})
    record = {"node": node, "instance": instance}
    if decision.write and not store.put_if_absent(key, json.dumps(record, sort_keys=True)):
        # someone took it between our read and our put: report who
        raw = store.get(key)
        raise WriterConflict(app, volume, json.loads(raw) if raw else {"node": "unknown"})
    return record, decision.write


def release_writer(store: WriterStore, app: str, volume: str, node: str, instance: str) -> bool:
    """Give the key up if we hold it. Returns whether we did."""
    value = json.dumps({"node": node, "instance": instance}, sort_keys=True)
    return store.delete_if_equal(writer_key(app, volume), value)


def mount_for_writing(store: WriterStore, plan: ClusterPlan, host: Host, app: str, volume: str, instance: str,
                      host_path: Path, run_dir: Path, weed: str, size_mb: int | None = None,
                      log_dir: Path | None = None) -> Path:
    """What the runtime calls before starting an instance with a volume: take the writer
    key, mount, verify the mount is real; give the key back if the mount fails. Returns
    the host path to bind-mount into the container."""
    _, fresh = take_writer(store, app, volume, host.name, instance)
    try:
        return mount_volume(plan, host, app, volume, host_path, run_dir, weed, size_mb=size_mb, fresh=fresh,
                            log_dir=log_dir)
    except Exception:
        release_writer(store, app, volume, host.name, instance)
        raise
