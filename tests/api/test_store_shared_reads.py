"""Within a daemon tick (Store.shared_reads) the loops' identical reads reach etcd once; a
write of the tick, another thread, or an answer older than SHARED_READ_MAX_AGE_S is never
served from it. Real etcd."""

from __future__ import annotations

import threading
import time

import pytest
from etcd3gw import exceptions as etcd_errors

from tests.api.conftest import CountingStore
from vcapp.state import store as store_module
from vcapp.state.store import Store

PREFIX = "/vc/test/shared-reads/"  # this file's own keys: other tests share the etcd
KEY = PREFIX + "key"
LATER = PREFIX + "later"


@pytest.fixture
def pair(etcd_url):
    other, mine = Store([etcd_url]), CountingStore([etcd_url])
    other.put(KEY, {"n": 1})
    yield other, mine
    for entry in other.list(PREFIX):
        other.delete(entry.key)


def test_identical_reads_of_a_tick_reach_etcd_once_and_outside_it_every_time(pair):
    other, mine = pair
    with mine.shared_reads():
        assert [mine.value(KEY), mine.value(KEY), mine.list(PREFIX)[0].value] == [{"n": 1}] * 3
        assert mine.sent == ["/kv/range", "/kv/range"]  # one get, one list
        other.put(KEY, {"n": 2})  # another machine writes meanwhile: seen next tick
        assert mine.value(KEY) == {"n": 1}
    assert mine.value(KEY) == {"n": 2}
    assert mine.value(KEY) == {"n": 2}
    assert mine.sent.count("/kv/range") == 4


def test_a_write_of_the_tick_makes_every_later_read_fresh(pair):
    other, mine = pair
    with mine.shared_reads():
        assert mine.value(KEY) == {"n": 1}
        other.put(KEY, {"n": 2})
        mine.put(PREFIX + "elsewhere", 1)  # any write: a txn's guard may have read anything
        assert mine.value(KEY) == {"n": 2}


def test_a_shared_answer_expires_and_other_threads_never_see_it(pair, monkeypatch):
    other, mine = pair
    monkeypatch.setattr(store_module, "SHARED_READ_MAX_AGE_S", 0.2)
    with mine.shared_reads():
        assert mine.value(KEY) == {"n": 1}
        other.put(KEY, {"n": 2})
        seen = []
        worker = threading.Thread(target=lambda: seen.append(mine.value(KEY)))
        worker.start()
        worker.join()
        assert seen == [{"n": 2}]  # a loop's worker thread reads for itself
        assert mine.value(KEY) == {"n": 1}
        time.sleep(0.3)  # a loop that waits on a key within the tick sees it change
        assert mine.value(KEY) == {"n": 2}


def test_a_ticks_reads_are_one_view_of_the_cluster_at_its_first_reads_revision(pair):
    other, mine = pair
    with mine.shared_reads():
        assert mine.value(KEY) == {"n": 1}
        other.put(LATER, "written after the view began")
        other.put(KEY, {"n": 2})
        assert mine.value(LATER) is None  # another key, read later: still the same view
        assert [e.key for e in mine.list(PREFIX)] == [KEY]
    assert mine.value(LATER) == "written after the view began"


def test_a_view_the_member_cannot_serve_is_read_afresh(pair):
    other, mine = pair
    with mine.shared_reads():
        assert mine.value(KEY) == {"n": 1}
        other.put(KEY, {"n": 2})
        # as when another member answered the view's first read and this one lags behind it
        ahead = other.revision() + 1000
        mine._view = (time.monotonic(), ahead)
        assert mine.list(PREFIX)[0].value == {"n": 2}  # not an error: read linearizably
        assert mine._view[1] < ahead  # and the view starts again at that read's revision


def test_the_next_tick_of_an_idle_cluster_asks_etcd_once_and_sees_any_write_since(pair):
    other, mine = pair
    with mine.shared_reads():
        assert mine.value(KEY) == {"n": 1} and mine.list(PREFIX)[0].value == {"n": 1}
        mine.members()
    mine.sent.clear()
    with mine.shared_reads():  # nothing written since: the last tick's answers are today's
        assert mine.value(KEY) == {"n": 1} and mine.list(PREFIX)[0].value == {"n": 1}
        mine.members()  # no revision counts membership: asked every tick
    assert mine.sent == ["/kv/range", "/cluster/member/list"]
    other.put("/vc/test/elsewhere", 1)  # a write anywhere in the cluster, even far from what is read
    mine.sent.clear()
    with mine.shared_reads():
        assert mine.value(KEY) == {"n": 1}
        other.put(KEY, {"n": 2})  # within the tick: the view holds
        assert mine.value(KEY) == {"n": 1}
    assert mine.sent == ["/kv/range", "/kv/txn"]  # the revision, then the last tick's reads at it, at once
    with mine.shared_reads():
        assert mine.value(KEY) == {"n": 2}
    other.delete("/vc/test/elsewhere")


def test_a_tick_after_one_that_wrote_carries_only_what_it_read_after_the_write(pair):
    other, mine = pair
    with mine.shared_reads():
        assert mine.value(KEY) == {"n": 1}
        mine.put(LATER, "mine")
        assert mine.value(LATER) == "mine"
    mine.sent.clear()
    with mine.shared_reads():
        assert mine.value(LATER) == "mine"  # read after the write, at the tick's last view: carried
        assert mine.value(KEY) == {"n": 1}  # read before it: asked again
    assert mine.sent == ["/kv/range", "/kv/range"]


def test_a_lease_that_ends_between_ticks_is_seen_by_the_next(pair):
    other, mine = pair
    lease = other.grant(5)
    other.put(LATER, "alive", lease=lease)
    with mine.shared_reads():
        assert mine.value(LATER) == "alive"
    other.revoke(lease)  # as when the TTL runs out: its keys go, and the revision moves
    with mine.shared_reads():
        assert mine.value(LATER) is None


def test_the_revision_asked_in_a_tick_is_the_one_its_first_read_saw(pair):
    other, mine = pair
    with mine.shared_reads():
        assert mine.value(KEY) == {"n": 1}
    other.put(KEY, {"n": 2})
    mine.sent.clear()
    with mine.shared_reads():
        seen = mine.revision()
        other.put(KEY, {"n": 3})
        assert mine.revision() == seen and mine.value(KEY) == {"n": 2}
    assert mine.sent == ["/kv/range", "/kv/txn"]  # the tick's first read answered revision()
    assert mine.revision() == seen + 1


class GateRecordingStore(CountingStore):
    """Also records whether each range request was linearizable."""

    def __init__(self, endpoints):
        super().__init__(endpoints)
        self.linearizable: list[bool] = []

    def _call(self, path, payload):
        if path == "/kv/range":
            self.linearizable.append(not payload.get("serializable"))
        return super()._call(path, payload)


def test_a_daemons_idle_ticks_ask_the_leader_once_in_a_while_and_still_see_every_write(etcd_url, pair):
    other, _ = pair
    mine = GateRecordingStore([etcd_url])
    with mine.shared_reads(gate_on_member=True):
        assert mine.value(KEY) == {"n": 1}
    mine.linearizable.clear()
    for _ in range(3):  # idle ticks within GATE_TRUSTS_MEMBER_S: the member's own copy answers
        with mine.shared_reads(gate_on_member=True):
            assert mine.value(KEY) == {"n": 1}
    assert mine.linearizable == [False, False, False]
    other.put(KEY, {"n": 2})  # written by another machine: the next tick sees it
    with mine.shared_reads(gate_on_member=True):
        assert mine.value(KEY) == {"n": 2}
    assert not any(mine.linearizable[3:])
    mine._linearized_at -= store_module.GATE_TRUSTS_MEMBER_S  # as when the last one is that old
    mine.linearizable.clear()
    with mine.shared_reads(gate_on_member=True):
        assert mine.value(KEY) == {"n": 2}
    assert mine.linearizable == [True]
    with mine.shared_reads():  # any other Store's user (the API) asks the leader every time
        assert mine.value(KEY) == {"n": 2}
    assert mine.linearizable == [True, True]


def test_a_member_whose_copy_is_behind_a_view_already_seen_is_not_trusted(etcd_url, pair):
    other, _ = pair
    mine = GateRecordingStore([etcd_url])
    with mine.shared_reads(gate_on_member=True):
        assert mine.value(KEY) == {"n": 1}
    # as when the last view came from another member, or this one restarted and catches up
    mine._newest_view = other.revision() + 1000
    mine.linearizable.clear()
    with mine.shared_reads(gate_on_member=True):
        assert mine.value(KEY) == {"n": 1}
    assert mine.linearizable == [False, True]  # its copy, found behind; then the leader's answer


def test_after_a_write_the_next_tick_reads_what_the_last_one_read_in_one_request_and_sees_it_all(pair):
    other, mine = pair
    other.put(LATER, "first")

    def tick():
        return (mine.value(KEY), [e.value for e in mine.list(PREFIX)], mine.count(PREFIX),
                mine.newest_change(PREFIX), mine.value(PREFIX + "never"))

    with mine.shared_reads():
        before = tick()
    other.put(KEY, {"n": 2})
    other.delete(LATER)  # a deletion, which no key's revision shows
    other.put(PREFIX + "never", "now")
    mine.sent.clear()
    with mine.shared_reads():
        after = tick()
        assert mine.value(PREFIX + "other") is None  # a read the last tick did not make: asked
    assert after == ({"n": 2}, [{"n": 2}, "now"], 2, other.revision(), "now") != before
    assert mine.sent == ["/kv/range", "/kv/txn", "/kv/range"]


class RefusingTxnStore(CountingStore):
    """etcd refuses its transactions, as when the last view's revision was compacted meanwhile."""

    def _call(self, path, payload):
        if path == "/kv/txn":
            self.sent.append(path)
            raise etcd_errors.Etcd3Exception("etcdserver: mvcc: required revision has been compacted")
        return super()._call(path, payload)


def test_a_tick_whose_reads_cannot_be_fetched_at_once_reads_them_one_by_one(etcd_url, pair):
    other, _ = pair
    mine = RefusingTxnStore([etcd_url])
    with mine.shared_reads():
        assert mine.value(KEY) == {"n": 1} and mine.list(PREFIX)[0].value == {"n": 1}
    other.put(KEY, {"n": 2})
    mine.sent.clear()
    with mine.shared_reads():
        assert mine.value(KEY) == {"n": 2} and mine.list(PREFIX)[0].value == {"n": 2}
    assert mine.sent == ["/kv/range", "/kv/txn", "/kv/range", "/kv/range"]
