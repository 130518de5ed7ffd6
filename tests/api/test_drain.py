"""Draining a machine (`vcapp node drain`) as records in a real etcd: the mark, what `vcapp
nodes` shows, an unknown name refused with what to do, and the mark gone with the machine."""

from __future__ import annotations

import pytest

from vcapp.errors import NotFound
from vcapp.state import membership


def test_drain_marks_the_machine_once_and_undrain_clears_it(cluster):
    store = cluster.store
    assert membership.drain(store, "home-1", "alice") == {"name": "home-1", "drained": True, "changed": True}
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
