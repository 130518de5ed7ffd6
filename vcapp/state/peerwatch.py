"""Machines watching each other: a death is seen in about two seconds, not when a lease expires.

Every machine probes every live peer over the cluster network twice a second (an ICMP echo, or
a TCP connect to its API port where raw sockets are not allowed, vcapp/node/peerwatch_loop.py):
an answer, even a refused connect, means the machine and its network are up; a probe that times
out or finds no route is a miss. A peer that missed
`MISSES_TO_SUSPECT` probes in a row and has not answered for `SILENCE_S` is a suspect of this
machine, published at /vc/suspects/<observer>
(bound to the observer's lease). A suspect is *confirmed* unreachable when enough other live
machines suspect it too (`confirmed`): two, or the one other machine of a two-machine cluster.
One machine's bad link, or one overloaded observer whose probes time out, confirms nothing.

What a confirmation changes (the consul/serf and Nomad heartbeat model, with the lease kept as
the fencing truth): routers stop sending to the machine's instances, and the placer moves its
instances that own no volume. An instance with a volume moves only when the machine's lease
expires, so a machine that is merely cut off has fenced itself (vcapp/node/runtime_loop.py)
before another may write its volume. Only this module reads or writes these keys.
"""

from __future__ import annotations

import time

from vcapp.state import keys, membership
from vcapp.state.store import Store

PROBE_EVERY_S = 0.5
# A mesh round trip is milliseconds; a second covers a loaded host's scheduling of the
# userspace WireGuard process. An echo or a connect is answered by the kernel, so a busy machine answers.
PROBE_TIMEOUT_S = 1.0
# Two misses in a row and 1.5 s without an answer: a dead machine is a suspect ~2 s after it
# died; a flapping link also has to fail a second observer to count.
MISSES_TO_SUSPECT = 2
SILENCE_S = 1.5
CONFIRMING_OBSERVERS = 2


def publish(store: Store, observer: str, suspects: dict[str, float], lease: int) -> None:
    """`observer`'s suspects (peer -> since, unix seconds); an empty dict clears them."""
    if suspects:
        store.put(keys.suspects(observer), {"peers": suspects, "at": time.time()}, lease=lease)
    else:
        store.delete(keys.suspects(observer))


def read(store: Store) -> dict[str, dict[str, float]]:
    """observer -> {peer: since} of every machine that suspects someone."""
    out = {}
    for e in store.list(keys.SUSPECTS):
        peers = (e.value or {}).get("peers") if isinstance(e.value, dict) else None
        if isinstance(peers, dict):
            out[keys.name_of(e.key, keys.SUSPECTS)] = {str(p): float(t) for p, t in peers.items()}
    return out


def confirmed(alive: set[str], reports: dict[str, dict[str, float]]) -> dict[str, list[str]]:
    """The live machines enough live others cannot reach -> who says so (pure)."""
    out = {}
    for peer in sorted(alive):
        others = alive - {peer}
        needed = min(CONFIRMING_OBSERVERS, len(others))
        seen_by = sorted(o for o in others if peer in reports.get(o, {}))
        if needed and len(seen_by) >= needed:
            out[peer] = seen_by
    return out


def unreachable(store: Store, alive: set[str]) -> dict[str, list[str]]:
    """`confirmed` from the store: live machines the others cannot reach, and who says so."""
    return confirmed(alive, read(store))


def reachable(store: Store) -> set[str]:
    """The live machines (a current lease) but those confirmed unreachable: the ones routes
    send to, handoffs wait for and storage counts as up."""
    alive = membership.alive_machines(store)
    return alive - set(unreachable(store, alive))


def is_unreachable(store: Store, machine: str) -> bool:
    """Is `machine` confirmed unreachable? One read while nobody suspects it (the usual case)."""
    reports = read(store)
    if not any(machine in peers for peers in reports.values()):
        return False
    return machine in confirmed(membership.alive_machines(store), reports)


class Tracker:
    """One observer's view of its peers (pure: the loop feeds it probe results as they land)."""

    def __init__(self) -> None:
        self.misses: dict[str, int] = {}
        self.heard: dict[str, float] = {}  # peer -> last answer (or when it became a peer)
        self.since: dict[str, float] = {}  # suspects -> since

    def peers(self, names: set[str], now: float) -> None:
        """Whom to watch: new peers start as just heard; gone ones are forgotten."""
        for peer in set(self.heard) - names:
            for book in (self.misses, self.heard, self.since):
                book.pop(peer, None)
        for peer in names - set(self.heard):
            self.heard[peer], self.misses[peer] = now, 0

    def observe(self, peer: str, answered: bool, now: float) -> None:
        if peer not in self.heard:
            return
        if answered:
            self.heard[peer], self.misses[peer] = now, 0
            self.since.pop(peer, None)
            return
        self.misses[peer] += 1
        if self.misses[peer] >= MISSES_TO_SUSPECT and now - self.heard[peer] >= SILENCE_S:
            self.since.setdefault(peer, now)

    def suspects(self) -> dict[str, float]:
        return dict(self.since)
