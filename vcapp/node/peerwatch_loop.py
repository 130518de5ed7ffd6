"""This machine's probes of its peers (vcapp/state/peerwatch.py): a thread starts a connect to every
live peer's API port every PROBE_EVERY_S (one in flight per peer: a silent peer's probe takes
its whole timeout), feeds each answer to a `peerwatch.Tracker` as it lands, and publishes the
suspects when they change. The daemon's tick (`step`) only refreshes whom to probe: the
live machines and their addresses. A connect that is refused counts as an answer (the machine
and its network are up, a process is not); a timeout or "no route" is a miss.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from vcapp.state import keys, membership, peerwatch
from vcapp.state.store import Store

log = logging.getLogger("vcapp.peerwatch")

ANSWERED_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET}
# Whom to probe changes only when a machine joins, leaves or its lease ends: the tick reads
# the live machines and their addresses this often, not on every tick.
TARGETS_EVERY_S = 2.0


def probe(addr: str, port: int, timeout: float = peerwatch.PROBE_TIMEOUT_S) -> bool:
    """Did the machine at addr answer a TCP connect (accepted or refused) within `timeout`?"""
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except OSError as e:
        return e.errno in ANSWERED_ERRNOS


class PeerWatchLoop:
    name = "peerwatch"

    def __init__(self, ctx) -> None:
        self.node = ctx.cfg.name
        self.endpoints = ctx.cfg.store_endpoints()
        self.lease = ctx.lease
        self.targets: dict[str, tuple[str, int]] = {}  # peer -> (addr, port), set by step
        self.targets_at = 0.0  # monotonic time of the last read of the targets
        self.tracker = peerwatch.Tracker()
        self.published: tuple[set[str], int] | None = None  # (suspects, lease) last written
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="vcapp-peerwatch", daemon=True)
        self.thread.start()

    def step(self, ctx) -> None:
        self.endpoints, self.lease = ctx.cfg.store_endpoints(), ctx.lease
        if time.monotonic() - self.targets_at < TARGETS_EVERY_S:
            return
        self.targets_at = time.monotonic()
        alive = membership.alive_machines(ctx.store)
        targets = {}
        for e in ctx.store.list(keys.NODES):
            name, rec = keys.name_of(e.key, keys.NODES), e.value if isinstance(e.value, dict) else {}
            url = urlsplit(rec.get("api_url") or "")
            if name != self.node and name in alive and rec.get("addr") and url.port:
                targets[name] = (rec["addr"], url.port)
        self.targets = targets

    def _run(self) -> None:
        store, endpoints = None, None
        lock = threading.Lock()
        flying: dict[str, object] = {}

        def one(peer: str, target: tuple[str, int]) -> None:
            answered = probe(*target)
            with lock:
                self.tracker.observe(peer, answered, time.monotonic())

        with ThreadPoolExecutor(max_workers=10, thread_name_prefix="vcapp-probe") as pool:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    if self.endpoints != endpoints:
                        store, endpoints = Store(self.endpoints), list(self.endpoints)
                    targets = dict(self.targets)
                    with lock:
                        self.tracker.peers(set(targets), time.monotonic())
                        suspects = {p: time.time() - (time.monotonic() - t)
                                    for p, t in self.tracker.suspects().items()}
                    for peer, target in targets.items():
                        if peer not in flying or flying[peer].done():
                            flying[peer] = pool.submit(one, peer, target)
                    if (set(suspects), self.lease) != self.published and self.lease:
                        peerwatch.publish(store, self.node, suspects, self.lease)
                        if set(suspects) != (self.published or (set(), 0))[0]:
                            if suspects:
                                log.warning("cannot reach %s", ", ".join(sorted(suspects)))
                            else:
                                log.info("every peer answers again")
                        self.published = (set(suspects), self.lease)
                except Exception:  # the watch must outlive a bad round (etcd away, ...)
                    log.exception("peer probe round failed; trying again")
                self.stop.wait(max(0.0, peerwatch.PROBE_EVERY_S - (time.monotonic() - started)))
