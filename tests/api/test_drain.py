"""Draining a machine (`vcapp node drain`) as records in a real etcd: the mark, what `vcapp
nodes` shows, an unknown name refused with what to do, and the mark gone with the machine; a
drain with the machine's storage only when the others can hold three copies of the data."""

from __future__ import annotations

import time

import pytest

from vcapp.errors import Conflict, NotFound
from vcapp.state import keys, membership, volumes


def test_drain_marks_the_machine_once_and_undrain_clears_it(cluster):
    store = cluster.store
    assert membership.drain(store, "home-1", "alice") == {"name": "home-1", "drained": True, "storage": False,
                                                          "changed": True}
    assert membership.drain(store, "home-1", "alice")["changed"] is False
    [row] = membership.list_nodes(store)
    assert row["drained"] is True
    assert set(membership.drained_machines(store)) == {"home-1"}
    kinds = [e.get("kind") for e in store.list("/vc/events/") for e in [e.value]]
    assert kinds.count("node.drained") == 1
    assert membership.drain(store, "home-1", "alice", drained=False)["changed"] is True
    assert membership.list_nodes(store)[0]["drained"] is False and membership.drained_machines(store) == {}


def test_an_unknown_machine_is_refused_and_nothing_is_written(cluster):
    with pytest.raises(NotFound, match="`vcapp nodes` lists them"):
        membership.drain(cluster.store, "home-9", "alice")
    assert membership.drained_machines(cluster.store) == {}


def test_a_removed_machine_leaves_no_drain_mark(cluster):
    membership.drain(cluster.store, "home-1", "alice")
    membership.remove_node(cluster.store, "home-1")
    assert membership.drained_machines(cluster.store) == {}


def machines(store, up: dict[str, str], down: dict[str, str] | None = None) -> None:
    """Node records for `up` and `down` (name -> site), and a live lease for those up."""
    lease = store.grant(60)
    for name, site in {**up, **(down or {})}.items():
        store.put(keys.node(name), {"name": name, "site": site, "addr": f"10.1.0.{len(name)}"})
    for name in up:
        store.put(keys.alive(name), {"at": time.time()}, lease=lease)


def test_a_storage_drain_needs_three_other_live_machines_and_a_refusal_changes_nothing(cluster):
    store = cluster.store
    machines(store, {"home-1": "home", "home-2": "home", "office-1": "office"}, down={"home-3": "home"})
    with pytest.raises(Conflict, match=r"cannot hold 3 copies .* needs 3 live machines besides home-1\. Join a"):
        volumes.drain_storage(store, "home-1", "alice")
    assert membership.drained_machines(store) == {}  # home-3 is down: two others are not enough
    machines(store, {"home-3": "home"})
    answer = volumes.drain_storage(store, "home-1", "alice")
    assert answer == {"name": "home-1", "drained": True, "storage": True, "changed": True}
    assert volumes.storage_drained(store) == {"home-1"}
    assert sorted(volumes.live_sites(store)) == ["home", "home", "office"]  # new data avoids home-1
    rows = {r["name"]: r for r in membership.list_nodes(store)}
    assert rows["home-1"]["drained"] and rows["home-1"]["storage_drained"] and not rows["home-2"]["storage_drained"]
    # a second machine's storage cannot go too: three would be left only counting home-1
    with pytest.raises(Conflict, match="besides home-2"):
        volumes.drain_storage(store, "home-2", "alice")
    assert membership.drain(store, "home-1", "alice")["storage"] is True  # a plain drain keeps the storage drain
    assert membership.drain(store, "home-1", "alice", drained=False)["changed"] is True
    assert volumes.storage_drained(store) == set() and len(volumes.live_sites(store)) == 4


def test_a_drained_machine_drained_again_with_its_storage_changes_and_says_so(cluster):
    store = cluster.store
    machines(store, {"home-1": "home", "home-2": "home", "home-3": "home", "home-4": "home"})
    assert membership.drain(store, "home-4", "alice")["storage"] is False
    assert volumes.drain_storage(store, "home-4", "alice")["changed"] is True
    assert volumes.drain_storage(store, "home-4", "alice")["changed"] is False
    kinds = [e.value.get("kind") for e in store.list("/vc/events/")]
    assert kinds.count("node.drained") == 2


def test_an_unknown_machine_cannot_be_storage_drained(cluster):
    with pytest.raises(NotFound, match="`vcapp nodes` lists them"):
        volumes.drain_storage(cluster.store, "home-9", "alice")
