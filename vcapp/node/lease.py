"""This machine's liveness lease, renewed on a thread of its own.

The daemon's tick does many etcd calls (loops, the controller), each allowed seconds per
endpoint. While etcd elects a new leader those calls hang; if the renewal waited behind
them, a healthy machine's lease ran out with the dead one's (seen in bench/ingress_bench.py:
killing the etcd leader's machine also expired a survivor's lease, which emptied an app's
routes for 4 s). Here a renewal is one short request, retried every tick, each endpoint
given KEEPALIVE_TIMEOUT.

`confirmed_at()` is when the last successful renewal was *sent* (monotonic): etcd counts
the TTL from when it received it, later, so fencing on this clock is on the safe side.
"""

from __future__ import annotations

import logging
import threading
import time

from vcapp.state.store import Store, StoreUnavailable

log = logging.getLogger("vcapp.node")

LEASE_TTL = 5  # s: a machine that stops renewing is declared dead this long after
# One renewal to one member: milliseconds when etcd has a leader. Short, so a member that
# hangs (electing) or is gone costs little before the next endpoint is asked.
KEEPALIVE_TIMEOUT = 1.0


class LeaseKeeper:
    def __init__(self, every: float):
        self.every = every
        self._lock = threading.Lock()
        self._lease = 0
        self._confirmed = 0.0
        self._expired = False
        self._endpoints: list[str] = []
        self._store: Store | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def adopt(self, lease: int, granted_at: float) -> None:
        """Keep `lease` alive from now on (granted by a request sent at `granted_at`)."""
        with self._lock:
            self._lease, self._confirmed, self._expired = lease, granted_at, False

    def set_endpoints(self, endpoints: list[str]) -> None:
        with self._lock:
            if endpoints != self._endpoints:
                self._endpoints = list(endpoints)
                self._store = Store(endpoints, timeout=KEEPALIVE_TIMEOUT)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vcapp-lease", daemon=True)
            self._thread.start()

    def expired(self) -> bool:
        """etcd said the lease is gone: a new one must be granted (and the alive key put)."""
        with self._lock:
            return self._expired

    def confirmed_at(self) -> float:
        with self._lock:
            return self._confirmed

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self._renew(began)
            self._stop.wait(max(0.0, self.every - (time.monotonic() - began)))

    def _renew(self, began: float) -> None:
        with self._lock:
            lease, store, expired = self._lease, self._store, self._expired
        if not lease or store is None or expired:
            return
        try:
            ttl = store.keepalive(lease)
        except StoreUnavailable:
            return  # no member answered in time: the next tick asks again
        except Exception as e:  # an odd answer must not end the renewals
            log.warning("lease renewal failed: %s", e)
            return
        with self._lock:
            if lease != self._lease:
                return  # replaced meanwhile
            if ttl > 0:
                self._confirmed = max(self._confirmed, began)
            else:
                self._expired = True
