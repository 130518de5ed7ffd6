"""A machine's background passes start at once when what they act on changed, instead of at
their next timed pass: the runtime's when a placement is written (a failover's move, a new
release), the storage's when a machine's lease ends or comes back (the dead machine's storage
must fail fast before a moved instance mounts its volume). Real etcd for the store's
question; the loops' decisions with a stand-in worker."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.api.conftest import CountingStore
from vcapp.node.harness import Worker
from vcapp.node.runtime_loop import RuntimeLoop
from vcapp.node.storage_loop import StorageLoop
from vcapp.state import keys, volumes
from vcapp.state.store import Entry, Store

PREFIX = "/vc/test/placement-changes/"  # this file's own keys: other tests share the etcd


@pytest.fixture
def store(etcd_url):
    s = Store([etcd_url])
    yield s
    s.delete(PREFIX, prefix=True)


def test_the_newest_change_under_a_prefix_is_the_last_put_whichever_key(store):
    assert store.newest_change(PREFIX) == 0
    first = store.put(PREFIX + "blog/0", {"node": "home-1"})
    store.put(PREFIX + "shop/0", {"node": "home-2"})
    moved = store.put(PREFIX + "blog/0", {"node": "home-3"})  # an older key written again
    assert moved > first
    assert store.newest_change(PREFIX) == moved
    store.put("/vc/test/placement-changes-not/x", {})  # a sibling prefix is not counted
    assert store.newest_change(PREFIX) == moved


class Waker(Worker):
    """A loop's worker, not started: counts the passes it was asked to run at once."""

    def __init__(self):
        super().__init__("test", lambda: None, 60.0)
        self.woken = 0

    def wake(self):
        self.woken += 1


class Placements:
    """What `instances.placed_at` reads: the newest placement's revision, or an outage."""

    def __init__(self, revision: int | Exception):
        self.revision = revision

    def newest_change(self, prefix: str) -> int:
        if isinstance(self.revision, Exception):
            raise self.revision
        return self.revision


class Leases:
    """What the storage loop's tick reads: the machines with a current lease and whether the
    cluster has storage (its first volume), or an outage."""

    def __init__(self, *alive: str, down: Exception | None = None, storage: bool = True):
        self.alive, self.down, self.storage = alive, down, storage

    def list(self, prefix: str, **kw):
        if self.down:
            raise self.down
        return [Entry(prefix + name, {}, 1, 1, 7) for name in self.alive]

    def get(self, key: str):
        if self.down:
            raise self.down
        return Entry(key, {}, 1, 1, 0) if self.storage and key == volumes.ENABLED else None


def test_the_runtime_passes_at_once_only_when_a_placement_was_written_since_the_last_tick():
    loop = RuntimeLoop.__new__(RuntimeLoop)  # the decision alone: no podman, no threads
    loop.worker = Waker()
    loop._wake_on_placement(Placements(40))
    assert loop.worker.woken == 1
    loop._wake_on_placement(Placements(40))  # nothing new: the timed pass is enough
    assert loop.worker.woken == 1
    loop._wake_on_placement(Placements(RuntimeError("etcd unreachable")))  # the pass reads for itself
    assert loop.worker.woken == 1
    loop._wake_on_placement(Placements(41))
    assert loop.worker.woken == 2


def test_storage_passes_at_once_when_a_machine_dies_or_comes_back():
    loop = StorageLoop.__new__(StorageLoop)  # the decision alone: no weed, no threads
    loop.worker = Waker()
    loop._wake_on_liveness(Leases("home-1", "home-2", "home-3"))
    assert loop.worker.woken == 1
    loop._wake_on_liveness(Leases("home-3", "home-2", "home-1"))  # the same machines
    assert loop.worker.woken == 1
    loop._wake_on_liveness(Leases("home-1", "home-3"))  # home-2's lease ended
    assert loop.worker.woken == 2
    loop._wake_on_liveness(Leases(down=RuntimeError("etcd unreachable")))
    assert loop.worker.woken == 2
    loop._wake_on_liveness(Leases("home-1", "home-2", "home-3"))  # back
    assert loop.worker.woken == 3


def test_storage_passes_at_once_when_the_first_volume_enables_it_and_not_before():
    loop = StorageLoop.__new__(StorageLoop)
    loop.worker, loop.enabled = Waker(), None
    loop._wake_on_liveness(Leases("home-1", "home-2", storage=False))
    assert loop.worker.woken == 1 and loop.enabled is False
    loop._pass(Leases(down=AssertionError("a pass read etcd while the tick says no storage")))
    loop._wake_on_liveness(Leases("home-1", "home-2", storage=False))
    assert loop.worker.woken == 1
    loop._wake_on_liveness(Leases("home-1", "home-2", storage=True))  # `vcapp volumes create`
    assert loop.worker.woken == 2 and loop.enabled is True


def test_the_runtime_pass_takes_the_ticks_assignments_and_reads_them_itself_when_the_tick_stopped(etcd_url):
    node = "wakeups-runtime-node"  # this test's own machine: other tests share the etcd
    writer, reader = Store([etcd_url]), CountingStore([etcd_url])
    writer.put(keys.assign("wakeupsblog", "0"), {"app": "wakeupsblog", "instance": "0", "node": node, "release": "3"})
    try:
        loop = RuntimeLoop.__new__(RuntimeLoop)  # the reads alone: no podman, no threads
        loop.node, loop.cfg, loop.read_at, loop.held = node, SimpleNamespace(addr="100.96.0.9"), 0.0, {}
        assert loop._read_desired(reader)  # what the tick does, in its view
        assert [a["release"] for a in loop.desired["assignments"]] == ["3"]
        reader.sent.clear()
        assert loop._desired_now(reader) and reader.sent == []  # the pass asks etcd nothing
        writer.put(keys.assign("wakeupsblog", "0"), {"app": "wakeupsblog", "instance": "0", "node": node, "release": "4"})
        loop.read_at -= 5  # no tick for seconds
        assert loop._desired_now(reader) and reader.sent
        assert [a["release"] for a in loop.desired["assignments"]] == ["4"]
    finally:
        writer.delete(keys.assign("wakeupsblog", "0"))
