"""The liveness lease survives a member that hangs (as one does while etcd elects a leader):
each renewal gives up on it within KEEPALIVE_TIMEOUT and asks the next, on real etcd."""

from __future__ import annotations

import socket
import time

import pytest

from vcapp.node.lease import KEEPALIVE_TIMEOUT, LeaseKeeper
from vcapp.state.store import Store

pytestmark = pytest.mark.cluster

TTL = 2


def keep(store: Store, key: str, endpoints: list[str], ttl: int = TTL) -> tuple[LeaseKeeper, int, float]:
    """A `ttl` lease holding `key`, kept by a keeper asking `endpoints`: (keeper, lease, granted at)."""
    keeper = LeaseKeeper(every=0.25)
    began = time.monotonic()
    lease = store.grant(ttl)
    store.put(key, "here", lease=lease)
    keeper.adopt(lease, began)
    keeper.set_endpoints(endpoints)
    return keeper, lease, began


def test_lease_stays_alive_past_its_ttl_with_a_hanging_member_first_and_ends_when_revoked(etcd_url, hanging_member):
    store = Store([etcd_url])
    keeper, lease, began = keep(store, "/vc/test/keeper", [hanging_member, etcd_url])
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


def test_renewal_asks_every_member_at_once_when_the_one_it_asks_stops_answering(etcd_url, hanging_member):
    """Three members that hang before the live one: asked one after the other, a second each, the
    first renewal lands after the TTL (3 s); asked together once a renewal is late, it lands in
    time (at ~1.1 s; a loaded host has taken 1.8)."""
    ttl = 3
    others = [socket.socket() for _ in range(2)]
    for other in others:
        other.bind(("127.0.0.1", 0))
        other.listen(16)
    store = Store([etcd_url])
    silent = [f"http://127.0.0.1:{other.getsockname()[1]}" for other in others]
    keeper, _, began = keep(store, "/vc/test/keeper2", [hanging_member, *silent, etcd_url], ttl)
    try:
        while keeper.confirmed_at() == began and time.monotonic() - began < 2 * ttl:
            time.sleep(0.05)
        assert keeper.confirmed_at() > began, "no renewal was confirmed"
        assert keeper.confirmed_at() - began < ttl, "the first renewal came too late: the lease ran out"
        time.sleep(2 * ttl)
        assert store.value("/vc/test/keeper2") == "here", "the lease ran out although a member answered"
        assert time.monotonic() - keeper.confirmed_at() < ttl / 2  # it keeps asking the one that answers
    finally:
        keeper.stop()
        for other in others:
            other.close()
