"""etcd gives the space of compacted revisions back (vcapp/node/defrag_loop.py): a member whose
database file is mostly free space is defragmented, one member at a time, never while it leads
a cluster with other voters; its data stays."""

from __future__ import annotations

import time

import pytest

from vcapp.dev.rigs.etcd import lone_etcd
from vcapp.node import defrag_loop
from vcapp.node.defrag_loop import Defragment, HandOver, MemberStatus, plan
from vcapp.state import keys
from vcapp.state.store import Store

MB = 1 << 20


@pytest.mark.unit
def test_only_a_mostly_free_database_is_defragmented_and_a_leader_hands_over_first():
    follower = MemberStatus(member_id=2, leader=1, db_size=300 * MB, in_use=20 * MB)
    assert plan(follower, [1, 2, 3]) == Defragment()
    assert plan(MemberStatus(1, 1, 300 * MB, 20 * MB), [1, 2, 3]) == HandOver(2)  # the leader: another leads first
    assert plan(MemberStatus(1, 1, 300 * MB, 20 * MB), [1]) == Defragment()  # alone: nobody to hand over to
    assert plan(MemberStatus(2, 1, 40 * MB, 1 * MB), [1, 2, 3]) is None  # too little to win back
    assert plan(MemberStatus(2, 1, 900 * MB, 600 * MB), [1, 2, 3]) is None  # mostly live data


@pytest.fixture
def own_etcd(tmp_path):
    """An etcd of its own (the session's is shared by every API test)."""
    with lone_etcd(tmp_path) as (url, _):
        yield url


def compact(store: Store) -> None:
    """Compact every old revision away; the freed pages count once the next batch commits."""
    store.call("/kv/compaction", {"revision": str(store.revision()), "physical": True})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        store.put("/vc/tick", time.time())
        st = defrag_loop.member_status(store)
        if st.in_use < st.db_size / 2:
            return
        time.sleep(0.3)


def test_a_member_full_of_compacted_revisions_shrinks_back_and_keeps_its_data(own_etcd):
    store = Store([own_etcd], timeout=60)
    store.put("/vc/keep", {"still": "here"})
    blob = "x" * (512 * 1024)
    for i in range(200):  # 100 MB of revisions of one key: what the filers' entry rewrites look like
        store.put("/vc/blob", {"i": i, "blob": blob})
    compact(store)
    before = defrag_loop.member_status(store)
    assert before.db_size > 80 * MB and before.in_use < before.db_size / 2, before
    done = defrag_loop.run_once(store, store, "home-1")
    after = defrag_loop.member_status(store)
    assert done and "etcd defragmented" in done
    assert after.db_size < before.db_size / 4, (before, after)
    assert store.value("/vc/keep") == {"still": "here"} and store.value("/vc/blob")["i"] == 199
    assert store.get(keys.ETCD_DEFRAG_TURN) is None  # the turn is given back
    assert defrag_loop.run_once(store, store, "home-1") is None  # nothing left to win back


def test_a_member_waits_while_another_has_the_turn(own_etcd):
    store = Store([own_etcd], timeout=60)
    for i in range(150):
        store.put("/vc/blob", {"i": i, "blob": "y" * (512 * 1024)})
    compact(store)
    lease = store.grant(30)
    store.put(keys.ETCD_DEFRAG_TURN, {"node": "home-2"}, lease=lease)
    before = defrag_loop.member_status(store)
    assert defrag_loop.run_once(store, store, "home-1") is None
    assert defrag_loop.member_status(store).db_size == before.db_size
    store.revoke(lease)
    assert defrag_loop.run_once(store, store, "home-1")
