"""An etcd member that stopped answering costs one wait per process, not one per Store: the
API gives each of its threads a Store, and the loops have theirs (vcapp/state/store.py)."""

from __future__ import annotations

import time

import pytest

from vcapp.state.store import Store, StoreUnavailable

TIMEOUT = 1.0  # the Stores' request timeout here: what one wait on the silent member costs


def timed_get(store: Store) -> float:
    began = time.monotonic()
    store.get("/vc/test/anything")
    return time.monotonic() - began


def test_a_member_that_did_not_answer_is_asked_last_by_every_store_of_the_process(etcd_url, hanging_member):
    first = Store([hanging_member, etcd_url], timeout=TIMEOUT)
    assert timed_get(first) >= TIMEOUT  # it waited on the silent member once
    assert timed_get(first) < TIMEOUT / 2  # and then asks the live one first
    for _ in range(3):  # new Stores, as each API thread has: no wait
        assert timed_get(Store([hanging_member, etcd_url], timeout=TIMEOUT)) < TIMEOUT / 2


def test_a_silent_member_is_still_asked_when_no_other_answers(hanging_member):
    store = Store([hanging_member], timeout=TIMEOUT)
    for _ in range(2):
        began = time.monotonic()
        with pytest.raises(StoreUnavailable, match=f"no etcd endpoint answered .*{hanging_member}"):
            store.get("/vc/test/anything")
        assert time.monotonic() - began >= TIMEOUT
