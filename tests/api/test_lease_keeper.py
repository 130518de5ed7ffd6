"""The liveness lease survives a member that hangs (as one does while etcd elects a leader):
each renewal gives up on it within KEEPALIVE_TIMEOUT and asks the next, on real etcd."""

from __future__ import annotations

import time

import pytest

from vcapp.node.lease import KEEPALIVE_TIMEOUT, LeaseKeeper
from vcapp.state.store import Store

pytestmark = pytest.mark.cluster

TTL = 2


def test_lease_stays_alive_past_its_ttl_with_a_hanging_member_first_and_ends_when_revoked(etcd_url, hanging_member):
    store = Store([etcd_url])
    keeper = LeaseKeeper(every=0.25)
    began = time.monotonic()
    lease = store.grant(TTL)
    store.put("/vc/test/keeper", "here", lease=lease)
    keeper.adopt(lease, began)
    keeper.set_endpoints([hanging_member, etcd_url])
    try:
        time.sleep(3 * TTL)
        assert store.value("/vc/test/keeper") == "here", "the lease ran out although etcd was reachable"
        assert not keeper.expired()
        assert time.monotonic() - keeper.confirmed_at() < TTL  # renewed recently, not just once
        store.revoke(lease)
        deadline = time.monotonic() + 2 * KEEPALIVE_TIMEOUT + 1
        while not keeper.expired() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert keeper.expired(), "a lease etcd no longer has must be reported, so a new one is granted"
    finally:
        keeper.stop()
