"""Where a build on this machine finds the buildpacks' stacks (builder/stacks.py): every live
machine's registry, this one's first, and a cluster-wide lock so that a stack no registry
has yet is loaded or made by one machine, which pushes it for the others to pull.

    /vc/stacks/making/<name>-<suite>-<key>   {machine, since}, bound to a lease of MAKER_TTL
                                             that the maker keeps alive while it works

Taking the lock is a transaction (the key absent -> put it). A machine that finds it taken
waits, saying who makes what, until the key goes: the maker pushed the stack (the waiter then
pulls it), failed (the waiter tries itself), or died (its lease runs out within MAKER_TTL).

A stack lives in the registry of the machine that loaded or made it; machines that pull it do
not push it again. If that machine is lost, the next build that needs the stack loads or
makes it once more and shares it from its own registry.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Callable, Iterator

from builder import registry as image_registry
from builder import stacks
from vcapp import machine
from vcapp.machine import NodeConfig
from vcapp.state import keys, membership
from vcapp.state.store import Store, StoreUnavailable, absent, put_op

log = logging.getLogger("vcapp.stackshare")

REGISTRY_PORT = image_registry.DEFAULT_PORT
# A maker that dies holds the others up this long at most; renewed every third of it, so two
# lost renewals in a row still keep a live maker's lock.
MAKER_TTL = 30
RENEW_EVERY_S = MAKER_TTL / 3
WAIT_POLL_S = 2.0  # a waiter asks etcd this often whether the maker is done
# A waiter says it still waits this often: the push log shows why it is quiet, and the git
# client's connection sees traffic (remote_build.py's idle timeout is 60 s).
WAIT_NOTE_EVERY_S = 30.0

Log = Callable[[str], None]


def registries(store: Store, node: NodeConfig) -> tuple[str, ...]:
    """This machine's registry, then every other live machine's (by name)."""
    nodes = membership.node_records(store)
    alive = membership.alive_machines(store)
    others = [f"{rec['addr']}:{REGISTRY_PORT}" for name, rec in sorted(nodes.items())
              if name != node.name and name in alive and rec.get("addr")]
    return tuple(dict.fromkeys([f"{node.addr}:{REGISTRY_PORT}", *others]))


def for_build(store: Store, node: NodeConfig, say: Log) -> stacks.Share:
    """The stacks.Share a build on `node` gets."""
    return stacks.Share(registries(store, node), machine.registry_auth_file(),
                        lambda name: one_maker(store, node.name, name, say))


@contextlib.contextmanager
def one_maker(store: Store, machine: str, name: str, say: Log) -> Iterator[None]:
    """Hold /vc/stacks/making/<name> for `machine` (waiting while another machine holds it).
    When etcd cannot be asked, the build goes on without the lock (at worst the stack is
    made twice), saying so."""
    key = keys.stack_maker(name)
    try:
        lease = _take(store, machine, key, name, say)
    except StoreUnavailable as e:
        say(f"-----> could not take the cluster's lock for stack {name} ({e}): going on without it")
        yield
        return
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(store, lease, stop), name="vcapp-stack-maker", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join(RENEW_EVERY_S)
        try:
            store.revoke(lease)  # the key goes with it: waiters pull now
        except Exception as e:  # etcd unreachable: the lease runs out by itself
            log.warning("could not release the stack lock %s: %s", key, e)


def _take(store: Store, machine: str, key: str, name: str, say: Log) -> int:
    """Put `key` bound to a new lease once it is absent; the lease."""
    lease = store.grant(MAKER_TTL)
    waited_since, noted = time.monotonic(), 0.0
    while not store.txn([absent(key)], [put_op(key, {"machine": machine, "since": time.time()}, lease)]):
        holder = (store.value(key) or {}).get("machine", "another machine")
        if time.monotonic() - noted >= WAIT_NOTE_EVERY_S:
            say(f"-----> {holder} is making stack {name} for the cluster: waiting for it "
                f"({time.monotonic() - waited_since:.0f} s so far)")
            noted = time.monotonic()
        if store.keepalive(lease) <= 0:
            lease = store.grant(MAKER_TTL)
        time.sleep(WAIT_POLL_S)
    return lease


def _renew(store: Store, lease: int, stop: threading.Event) -> None:
    """Keep the maker's lease alive until `stop` (the build thread is busy making)."""
    while not stop.wait(RENEW_EVERY_S):
        try:
            store.keepalive(lease)
        except Exception as e:  # one lost renewal is fine; the next one may pass
            log.warning("stack lock renewal failed: %s", e)
