"""Route switch requests and acknowledgements (vcapp/state/routeswitch.py) against a real etcd: a
runtime's wait ends when every live machine's router acknowledged, names the routers that
did not when it times out, and ignores machines that are down."""

from __future__ import annotations

import threading
import time

from vcapp.state import keys, peerwatch, routeswitch
from vcapp.state.store import Store


def machines_up(store: Store, *names: str) -> int:
    store.delete("/vc/", prefix=True)
    lease = store.grant(60)
    for name in names:
        store.put(keys.alive(name), {"at": time.time()}, lease=lease)
    return lease


def test_the_wait_ends_once_every_live_router_acknowledged(etcd_url):
    store = Store([etcd_url])
    lease = machines_up(store, "home-1", "home-2")
    asked = routeswitch.ask(store, "home-1", "blog", "0", lease)
    assert routeswitch.newest_request(store) == asked
    routeswitch.acknowledge(store, "home-1", asked, lease)

    def second_router() -> None:
        time.sleep(0.5)
        routeswitch.acknowledge(store, "home-2", routeswitch.newest_request(store), lease)

    threading.Thread(target=second_router).start()
    began = time.monotonic()
    assert routeswitch.wait(store, asked, timeout=5) == []
    assert 0.4 < time.monotonic() - began < 3
    routeswitch.close(store, "home-1", "blog", "0")
    assert routeswitch.newest_request(store) == 0


def test_a_router_that_never_acknowledges_is_named_after_the_timeout(etcd_url):
    store = Store([etcd_url])
    lease = machines_up(store, "home-1", "home-2", "office-1")
    old = routeswitch.ask(store, "home-1", "blog", "0", lease)
    routeswitch.acknowledge(store, "home-1", old, lease)
    newer = routeswitch.ask(store, "home-1", "blog", "1", lease)
    routeswitch.acknowledge(store, "home-1", newer, lease)
    routeswitch.acknowledge(store, "office-1", old, lease)  # an older request does not count
    began = time.monotonic()
    assert routeswitch.wait(store, newer, timeout=1) == ["home-2", "office-1"]
    assert time.monotonic() - began >= 1


def test_a_machine_that_is_down_is_not_waited_for(etcd_url):
    store = Store([etcd_url])
    lease = machines_up(store, "home-1")
    asked = routeswitch.ask(store, "home-1", "blog", "0", lease)
    routeswitch.acknowledge(store, "home-1", asked, lease)
    store.put(keys.routes_applied("home-2"), {"revision": 0, "at": 0})  # home-2 is not alive
    assert routeswitch.wait(store, asked, timeout=1) == []


def test_a_container_leaving_its_machine_is_named_to_that_machines_router_until_the_switch_closes(etcd_url):
    store = Store([etcd_url])
    lease = machines_up(store, "home-1", "home-2")
    routeswitch.ask(store, "home-1", "blog", "1", lease, host_port=20001)
    routeswitch.ask(store, "home-1", "blog", "2", lease, host_port=20004)
    routeswitch.ask(store, "home-1", "shop", "0", lease)  # a new release here: nothing leaves
    routeswitch.ask(store, "home-2", "blog", "0", lease, host_port=20009)
    assert routeswitch.retiring(store, "home-1") == {"blog": (20001, 20004)}
    assert routeswitch.retiring(store, "home-2") == {"blog": (20009,)}
    assert routeswitch.retiring(store, "home") == {}  # a name that prefixes others' names: nothing of theirs
    store.put(keys.route_switch("home-1", "odd", "0"), {"at": 1, "host_port": "20001; rm -rf"}, lease=lease)
    assert "odd" not in routeswitch.retiring(store, "home-1")
    routeswitch.close(store, "home-1", "blog", "1")
    assert routeswitch.retiring(store, "home-1") == {"blog": (20004,)}


def test_a_machine_the_others_cannot_reach_is_not_waited_for(etcd_url):
    """Black-holed, its lease still runs for seconds, but its router cannot acknowledge."""
    store = Store([etcd_url])
    lease = machines_up(store, "home-1", "home-2", "home-3")
    asked = routeswitch.ask(store, "home-1", "blog", "0", lease)
    routeswitch.acknowledge(store, "home-1", asked, lease)
    routeswitch.acknowledge(store, "home-2", asked, lease)
    peerwatch.publish(store, "home-1", {"home-3": time.time()}, lease)
    assert routeswitch.wait(store, asked, timeout=0.5) == ["home-3"]  # one observer's word is not enough
    peerwatch.publish(store, "home-2", {"home-3": time.time()}, lease)
    began = time.monotonic()
    assert routeswitch.wait(store, asked, timeout=5) == []
    assert time.monotonic() - began < 1
