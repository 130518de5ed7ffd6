"""Suspects as records in a real etcd (vcapp/state/peerwatch.py): a machine is unreachable only when
two live observers published it, and one observer's word is not enough."""

from __future__ import annotations

import time

from vcapp.state import keys, peerwatch
from vcapp.state.store import Store


def test_a_machine_is_unreachable_once_two_live_observers_say_so(etcd_url):
    store = Store([etcd_url])
    store.delete("/vc/", prefix=True)
    lease = store.grant(60)
    for name in ("home-1", "home-2", "office-1"):
        store.put(keys.alive(name), {"at": time.time()}, lease=lease)
    assert not peerwatch.is_unreachable(store, "office-1")
    peerwatch.publish(store, "home-1", {"office-1": time.time()}, lease)
    assert not peerwatch.is_unreachable(store, "office-1")
    peerwatch.publish(store, "home-2", {"office-1": time.time()}, lease)
    assert peerwatch.is_unreachable(store, "office-1") and not peerwatch.is_unreachable(store, "home-1")
    assert peerwatch.unreachable(store, {"home-1", "home-2", "office-1"}) == {"office-1": ["home-1", "home-2"]}
    peerwatch.publish(store, "home-2", {}, lease)  # home-2 hears it again
    assert not peerwatch.is_unreachable(store, "office-1")
