"""The cluster-wide lock a stack is loaded or made under (vcapp/deploy/stackshare.py), against a real
etcd: a second machine needing the same stack waits for the first, says so, then goes on; and
the registries a build pulls stacks from."""

from __future__ import annotations

import threading
import time

from vcapp.deploy import stackshare
from vcapp.machine import NodeConfig
from vcapp.state import keys
from vcapp.state.store import Store

STACK = "python-bookworm-e2783a44d413"


def test_a_second_maker_waits_for_the_first_and_is_told_who(etcd_url, monkeypatch):
    monkeypatch.setattr(stackshare, "WAIT_POLL_S", 0.1)
    store = Store([etcd_url])
    store.delete(keys.STACK_MAKERS, prefix=True)
    events: list[str] = []
    said: list[str] = []
    holding = threading.Event()

    def first() -> None:
        with stackshare.one_maker(Store([etcd_url]), "home-1", STACK, events.append):
            events.append("home-1 in")
            holding.set()
            time.sleep(1.0)
            events.append("home-1 out")

    t = threading.Thread(target=first)
    t.start()
    assert holding.wait(10)
    assert store.value(keys.stack_maker(STACK))["machine"] == "home-1"
    with stackshare.one_maker(store, "home-2", STACK, said.append):
        events.append("home-2 in")
    t.join(10)
    assert events == ["home-1 in", "home-1 out", "home-2 in"]
    assert said and said[0].startswith(f"-----> home-1 is making stack {STACK} for the cluster: waiting for it")
    assert store.get(keys.stack_maker(STACK)) is None  # released with its lease


def test_stacks_are_pulled_from_this_machine_first_then_the_live_others(cluster):
    store = cluster.store
    for name, addr in (("home-2", "10.0.0.2"), ("home-3", "10.0.0.3")):
        store.put(keys.node(name), {"name": name, "addr": addr})
    lease = store.grant(30)
    store.put(keys.alive("home-3"), {}, lease)  # home-2 is down
    node = NodeConfig(cluster="acme", name="home-1", site="home", addr="10.0.0.1")
    assert stackshare.registries(store, node) == ("10.0.0.1:5000", "10.0.0.3:5000")


def test_without_etcd_the_build_goes_on_unlocked_and_says_so():
    said: list[str] = []
    ran = []
    with stackshare.one_maker(Store(["http://127.0.0.1:9"], timeout=1), "home-1", STACK, said.append):
        ran.append(True)
    assert ran and said[0].startswith(f"-----> could not take the cluster's lock for stack {STACK} (")
