"""This machine's liveness lease, renewed on a thread of its own.

The daemon's tick does many etcd calls (loops, the controller), each allowed seconds per
endpoint. While etcd elects a new leader those calls hang; if the renewal waited behind
them, a healthy machine's lease ran out with the dead one's (seen in bench/ingress_bench.py:
killing the etcd leader's machine also expired a survivor's lease, which emptied an app's
routes for 4 s). Here a renewal is one short request (KEEPALIVE_TIMEOUT) sent every tick to
the member that answered last; once no renewal has been confirmed for HEDGE_AFTER_S, every tick
sends one to each member that has none in flight. Renewals never wait for each other: asking
the members one after the other, a second each, once took a healthy machine's lease past its
fencing delay when another machine's link flapped or was black-holed during an election (the
soak, bench/soak.py: an app with a volume on a healthy machine stopped for 26 s).

`confirmed_at()` is when the last successful renewal was *sent* (monotonic): etcd counts
the TTL from when it received it, later, so fencing on this clock is on the safe side.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from vcapp.state.store import Store, StoreUnavailable

log = logging.getLogger("vcapp.node")

LEASE_TTL = 5  # s: a machine that stops renewing is declared dead this long after
# One renewal to one member: milliseconds when etcd has a leader. Short, so a member that
# hangs (electing) or is gone costs little before the next endpoint is asked.
KEEPALIVE_TIMEOUT = 1.0
# Two ticks without a confirmed renewal: the member asked may be electing or gone; ask them all.
HEDGE_AFTER_S = 1.0


class LeaseKeeper:
    def __init__(self, every: float):
        self.every = every
        self._lock = threading.Lock()
        self._lease = 0
        self._confirmed = 0.0
        self._expired = False
        self._endpoints: list[str] = []
        self._stores: dict[str, Store] = {}  # endpoint -> a Store of that member alone
        self._preferred = ""  # the endpoint whose renewal was confirmed last
        self._flying: dict[str, Future] = {}  # endpoint -> its renewal in flight (or done)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="vcapp-lease-rpc")
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
                self._stores = {e: self._stores.get(e) or Store([e], timeout=KEEPALIVE_TIMEOUT) for e in endpoints}
                if self._preferred not in self._stores:
                    self._preferred = endpoints[0] if endpoints else ""
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
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self._renew(began)
            self._stop.wait(max(0.0, self.every - (time.monotonic() - began)))

    def _renew(self, began: float) -> None:
        """Send this tick's renewals; each lands on its own (`_landed`)."""
        with self._lock:
            lease, expired, stale = self._lease, self._expired, began - self._confirmed
            targets = list(self._stores) if stale >= HEDGE_AFTER_S else [self._preferred]
            stores = self._stores
        if not lease or expired:
            return
        for endpoint in targets:
            store, flying = stores.get(endpoint), self._flying.get(endpoint)
            if store is None or (flying is not None and not flying.done()):
                continue
            try:
                future = self._pool.submit(store.keepalive, lease)
            except RuntimeError:  # stopped meanwhile
                return
            self._flying[endpoint] = future
            future.add_done_callback(lambda f, e=endpoint: self._landed(lease, e, began, f))

    def _landed(self, lease: int, endpoint: str, sent_at: float, future: Future) -> None:
        if future.cancelled():
            return  # the keeper stopped
        try:
            ttl = future.result()
        except StoreUnavailable:
            return  # this member did not answer in time: the next tick asks (them all, if stale)
        except Exception as e:  # an odd answer must not end the renewals
            log.warning("lease renewal failed: %s", e)
            return
        with self._lock:
            if lease != self._lease:
                return  # replaced meanwhile
            if ttl > 0:
                self._confirmed = max(self._confirmed, sent_at)
                self._preferred = endpoint
            else:
                self._expired = True
