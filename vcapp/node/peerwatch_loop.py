"""This machine's probes of its peers (vcapp/state/peerwatch.py): a thread starts a probe of every
live peer every PROBE_EVERY_S (one in flight per peer: a silent peer's probe takes
its whole timeout, and is followed by the next at once), feeds each answer to a
`peerwatch.Tracker` as it lands, and publishes the suspects when they change. A peer this
machine starts to suspect gets its hop and etcd connections from here cut at once
(router/cutoff.py).
The daemon's tick (`step`) only refreshes whom to probe: the live machines and their addresses.
A probe is an ICMP echo (`probe`); an echo reply, or where raw sockets are not allowed a connect
accepted or refused, counts as an answer (the machine and its network are up); a timeout or "no
route" is a miss.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable
from urllib.parse import urlsplit

from mesh.probe import echo
from router import cutoff
from vcapp.machine import ETCD_CLIENT_PORT
from vcapp.node.harness import Every, Worker
from vcapp.state import membership, peerwatch
from vcapp.state.store import Store, ask_last
from vcapp.views.ingress import NODE_HOP_PORT

log = logging.getLogger("vcapp.peerwatch")

ANSWERED_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET}
# Whom to probe changes only when a machine joins, leaves or its lease ends: the tick reads
# the live machines and their addresses this often, not on every tick.
TARGETS_EVERY_S = 2.0


def probe(addr: str, port: int, timeout: float = peerwatch.PROBE_TIMEOUT_S) -> bool:
    """Did the machine at addr answer within `timeout`? An ICMP echo (two packets through each
    WireGuard, where a TCP connect and its close took seven: with every machine and the edge
    probing every machine twice a second, those were a third of an idle follower's mesh
    traffic, bench/footprint.py); where this process may not send one, a TCP connect to `port`,
    accepted or refused. Either is answered by the kernel, so a busy machine answers."""
    global _echo_allowed
    if _echo_allowed:
        try:
            return echo(addr, timeout) is not None
        except PermissionError:
            _echo_allowed = False
            log.info("no raw sockets here (CAP_NET_RAW): probing peers with TCP connects")
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except OSError as e:
        return e.errno in ANSWERED_ERRNOS


_echo_allowed = True


def probe_targets(records: dict[str, object], alive: set[str], own: str) -> dict[str, tuple[str, int]]:
    """Whom to probe (pure): every other live machine with an address and an API port, as
    peer -> (addr, port), from the node records."""
    targets = {}
    for name, rec in records.items():
        rec = rec if isinstance(rec, dict) else {}
        url = urlsplit(rec.get("api_url") or "")
        if name != own and name in alive and rec.get("addr") and url.port:
            targets[name] = (rec["addr"], url.port)
    return targets


class Prober:
    """Probes of a set of peers (name -> (addr, port)): `round` starts one connect to every
    peer that has none in flight; a peer that misses is probed again at once (the miss took
    the probe's timeout), at least PROBE_EVERY_S apart when a probe fails fast ("no route").
    Answers land in `tracker` as they come; `fell(peer, target)` is called from the probe's
    thread when this prober starts to suspect a peer. Used by the machines (PeerWatchLoop)
    and by the edge (vcapp/edge/daemon.py), which probes the node routers."""

    def __init__(self, fell: Callable[[str, tuple[str, int]], None], thread_prefix: str) -> None:
        self.tracker = peerwatch.Tracker()
        self.lock = threading.Lock()  # the tracker, between `round` and the probes
        self.fell = fell
        self.targets: dict[str, tuple[str, int]] = {}
        self.flying: dict[str, Future] = {}  # peer -> its probe in flight (or done)
        self.pool = ThreadPoolExecutor(max_workers=10, thread_name_prefix=thread_prefix)
        self.stopping = threading.Event()

    def round(self, targets: dict[str, tuple[str, int]]) -> None:
        self.targets = dict(targets)
        with self.lock:
            self.tracker.peers(set(targets), time.monotonic())
        for peer, target in targets.items():
            if peer not in self.flying or self.flying[peer].done():
                self.flying[peer] = self.pool.submit(self._probe, peer, target)

    def suspects(self) -> dict[str, float]:
        """peer -> since (time.monotonic()) of every peer this prober suspects."""
        with self.lock:
            return self.tracker.suspects()

    def _probe(self, peer: str, target: tuple[str, int]) -> None:
        while not self.stopping.is_set():
            began = time.monotonic()
            answered = probe(*target)
            with self.lock:
                was = peer in self.tracker.suspects()
                self.tracker.observe(peer, answered, time.monotonic())
                now, watched = peer in self.tracker.suspects(), peer in self.tracker.heard
            if now and not was:
                self.fell(peer, target)
            if answered or not watched or peer not in self.targets:
                return
            time.sleep(max(0.0, peerwatch.PROBE_EVERY_S - (time.monotonic() - began)))

    def stop(self) -> None:
        self.stopping.set()
        self.pool.shutdown(wait=False, cancel_futures=True)


class PeerWatchLoop:
    name = "peerwatch"

    def __init__(self, ctx) -> None:
        self.node = ctx.cfg.name
        self.endpoints = ctx.cfg.store_endpoints()
        self.lease = ctx.lease
        self.targets: dict[str, tuple[str, int]] = {}  # peer -> (addr, port), set by step
        self.read_targets = Every(TARGETS_EVERY_S)
        # A peer this machine starts to suspect: requests in flight to its hop server are cut
        # and retried elsewhere, before the other machines confirm the death.
        self.prober = Prober(self._fell, "vcapp-probe")
        self.published: tuple[set[str], int] | None = None  # (suspects, lease) last written
        self.store: Store | None = None  # the worker's, made for store_endpoints
        self.store_endpoints: list[str] | None = None
        # The watch outlives a bad round (etcd away, ...): the worker runs the next one.
        self.worker = Worker("vcapp-peerwatch", self._round, peerwatch.PROBE_EVERY_S, log=log,
                             failed=lambda e: log.exception("peer probe round failed; trying again"))
        self.worker.start()

    def step(self, ctx) -> None:
        self.endpoints, self.lease = ctx.cfg.store_endpoints(), ctx.lease
        if not self.read_targets.due():
            return
        alive = membership.alive_machines(ctx.store)
        records = membership.node_records(ctx.store)
        self.targets = probe_targets(records, alive, self.node)

    def _fell(self, peer: str, target: tuple[str, int]) -> None:
        """A peer became a suspect: ask its etcd member last, cut this machine's connections to
        its hop server and its etcd member, and publish it now rather than at the next round
        (the confirmation, and every move it allows, waits for it).

        A request already in flight to a black-holed member gets no answer and no reset: it
        waited the Store's whole REQUEST_TIMEOUT (5 s) before the next member was asked. The
        daemon's tick and the runtime's pass, caught so on the lost machine's member, held the
        controller's election and the moved instance's start for those seconds (the slow half
        of bench/failover_bench.py's black holes: answering after ~7 s, not ~3.5). Cut, the
        request fails at once and is asked of another member."""
        log.info("%s stopped answering probes at %s:%d: a suspect from now", peer, *target)
        self._ask_last(self.prober.suspects())
        cutoff.abort(target[0], (NODE_HOP_PORT, ETCD_CLIENT_PORT))
        self.worker.wake()

    def _ask_last(self, suspects: dict[str, float]) -> None:
        """Every Store of this daemon asks the suspects' etcd members last: a black-holed
        member holds a request its whole timeout."""
        targets = self.prober.targets
        ask_last(targets[p][0] for p in suspects if p in targets)

    # ---- the worker's round: probes out, suspects published ---------------------------------

    def _round(self) -> None:
        if self.endpoints != self.store_endpoints:
            self.store, self.store_endpoints = Store(self.endpoints), list(self.endpoints)
        self.prober.round(dict(self.targets))
        suspected = self.prober.suspects()
        self._ask_last(suspected)
        suspects = {p: time.time() - (time.monotonic() - t) for p, t in suspected.items()}
        if (set(suspects), self.lease) != self.published and self.lease:
            self._publish(suspects)

    def _publish(self, suspects: dict[str, float]) -> None:
        began = time.monotonic()
        peerwatch.publish(self.store, self.node, suspects, self.lease)
        if set(suspects) != (self.published or (set(), 0))[0]:
            if suspects:  # the etcd put's time: what a confirmation waited for besides the probes
                log.warning("cannot reach %s (published in %.2fs)", ", ".join(sorted(suspects)),
                            time.monotonic() - began)
            else:
                log.info("every peer answers again")
        self.published = (set(suspects), self.lease)
