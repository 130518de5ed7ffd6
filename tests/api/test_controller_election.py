"""The controller election in a real etcd (vcapp/node/daemon.py `_lead`): a free seat is taken
by one machine; the others, while it is held, only read it (a campaign is a Raft write to
every member's disk even when it loses); the seat is taken again once the holder's lease ends;
a seat held on a machine's own lease is its own."""

from __future__ import annotations

import pytest

from tests.api.conftest import CountingStore
from vcapp.node.daemon import Daemon
from vcapp.state import keys
from vcapp.state.store import Store


@pytest.fixture
def store(etcd_url, tmp_path, monkeypatch):
    monkeypatch.setenv("VCAPP_DATA_DIR", str(tmp_path))
    s = CountingStore([etcd_url])
    s.delete("/vc/", prefix=True)
    yield s
    s.delete("/vc/", prefix=True)


def machine(store: Store) -> Daemon:
    d = Daemon()
    d.lease = store.grant(30)
    return d


def test_one_machine_takes_the_seat_and_the_others_only_read_it_until_its_lease_ends(store):
    first, second = machine(store), machine(store)
    first._lead("home-1", store)
    assert first.leader and store.value(keys.election("controller"))["node"] == "home-1"
    store.sent.clear()
    for _ in range(5):
        second._lead("home-2", store)
        first._lead("home-1", store)
    assert not second.leader and first.leader
    assert set(store.sent) == {"/kv/range"}, store.sent  # no campaign while the seat is held
    store.revoke(first.lease)  # home-1 is gone: its lease ends
    second._lead("home-2", store)
    assert second.leader and store.value(keys.election("controller"))["node"] == "home-2"
    first._lead("home-1", store)
    assert not first.leader


def test_a_seat_held_on_the_machines_own_lease_is_its_own(store):
    lost = machine(store)  # its campaign wrote the seat, and the answer never came back
    store.put(keys.election("controller"), {"lease": lost.lease, "node": "home-1"}, lease=lost.lease)
    other = machine(store)
    other._lead("home-2", store)
    lost._lead("home-1", store)
    assert lost.leader and not other.leader
