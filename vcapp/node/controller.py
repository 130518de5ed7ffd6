"""The cluster controller: runs on exactly one machine at a time (the holder of
/vc/election/controller, a key bound to that machine's liveness lease).

Each tick: read the node records and the live leases, write up/down transitions (with
events); and, when those changed or every MEMBERSHIP_EVERY_S, converge the etcd membership
(etcd_members.plan_members). Everything is derived from etcd, so a newly elected controller
simply carries on.
"""

from __future__ import annotations

import logging
import time

from vcapp.machine import ETCD_PEER_PORT
from vcapp.state import etcd_members, events, keys, membership
from vcapp.state.store import Store, StoreUnavailable

log = logging.getLogger("vcapp.controller")

PRUNE_EVERY = 300.0  # s: events are pruned now and then, not on every tick
# The etcd membership is converged at once when the machines or the live ones change, and
# otherwise this often (a learner catching up, a dead member's replace_after running out):
# each pass is a MemberList (a Raft round) and a read, twice a second on an idle cluster.
MEMBERSHIP_EVERY_S = 2.0


def membership_due(inputs: tuple, last_inputs: tuple | None, last_at: float, now: float) -> bool:
    """Whether the controller converges the etcd membership this tick."""
    return inputs != last_inputs or now - last_at >= MEMBERSHIP_EVERY_S


class Controller:
    def __init__(self, store: Store, replace_after: float = etcd_members.DEFAULT_REPLACE_AFTER):
        self.store = store
        self.replace_after = replace_after
        self._last_prune = 0.0
        self._membership_seen: tuple | None = None  # (machines, live ones) at the last convergence
        self._membership_at = 0.0

    def tick(self, now: float | None = None) -> None:
        now = now or time.time()
        nodes = membership.node_records(self.store)
        alive = membership.alive_machines(self.store)
        states = membership.node_states(self.store)
        self._transitions(nodes, alive, states, now)
        inputs = (frozenset(nodes), frozenset(alive))
        if membership_due(inputs, self._membership_seen, self._membership_at, now):
            self._membership(nodes, alive, states, now)
            self._membership_seen, self._membership_at = inputs, now
        if now - self._last_prune > PRUNE_EVERY:
            events.prune(self.store)
            self._last_prune = now

    def _transitions(self, nodes: dict, alive: set, states: dict, now: float) -> None:
        for name in nodes:
            state = "up" if name in alive else "down"
            previous = states.get(name)
            if previous and previous.get("state") == state:
                continue
            states[name] = {"state": state, "since": now}
            self.store.put(keys.nodestate(name), states[name])
            if previous is None and state == "down":
                continue  # a machine that never came up after joining is not news
            events.record(self.store, f"node.{state}", f"{name} is {state}", node=name)
            log.info("%s is %s", name, state)

    def _membership(self, nodes: dict, alive: set, states: dict, now: float) -> None:
        views = [
            etcd_members.NodeView(
                name, rec.get("site", ""), name in alive,
                0.0 if name in alive else now - states.get(name, {}).get("since", now),
            )
            for name, rec in nodes.items()
        ]
        members = etcd_members.member_views(self.store, self.store.members())
        for action in etcd_members.plan_members(views, members, self.replace_after):
            try:
                etcd_members.apply(self.store, action, lambda n: f"https://{nodes[n]['addr']}:{ETCD_PEER_PORT}")
            except StoreUnavailable:
                raise
            except Exception as e:  # e.g. a learner not caught up yet: try again next tick
                log.info("etcd %s of %s not done yet: %s", action.kind, action.node, e)
                break
