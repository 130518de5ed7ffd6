"""What a request to etcd costs the process that sends it: the Store's HTTP session
(vcapp/state/gateway_http.py, urllib3) against requests.Session (what it used before), in
one run.

One etcd with the cluster's TLS and auth (as `cluster init` leaves it), on loopback. Two Stores
with the machine's certificate and login, one per session, send the same requests in turn,
in batches: a lease renewal (what every machine sends twice a second), a read of one key
(each daemon tick's first read) and a write. Per kind: this process's CPU per request
(time.process_time: the sender's cost, not etcd's) and the median wall time, with the
ratio to requests'.

    .venv/bin/python bench/etcd_client_bench.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.etcd_tls_bench import CLUSTER_KEY, START_TIMEOUT, machine_tls, start  # noqa: E402
from etcd3gw.client import Etcd3Client  # noqa: E402
from vcapp.state import etcdauth  # noqa: E402
from vcapp.state.store import Store, wait_healthy  # noqa: E402

BATCH = 50  # requests of one kind by one session before the other's turn


class RequestsStore(Store):
    """The Store as it was: etcd3gw's client on a requests.Session."""

    def _client(self, url: str) -> Etcd3Client:
        scheme, rest = url.split("://", 1)
        host, port = rest.rsplit(":", 1)
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.tls.ca)
        session.cert = (str(self.tls.cert), str(self.tls.key))
        return Etcd3Client(host=host, port=int(port), protocol=scheme, timeout=self.timeout, api_path="/v3/",
                           session=session)


def run(count: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="etcd-client-bench-"))
    tls = machine_tls(work, revoked=[])
    proc, url = start(work, "e", tls, auth=True)
    try:
        wait_healthy(Store([url], tls=tls), START_TIMEOUT)
        etcdauth.enable(Store([url], tls=tls), CLUSTER_KEY, "m")
        etcdauth.save(tls.auth, etcdauth.machine(CLUSTER_KEY, "m"))
        stores = {"requests": RequestsStore([url], tls=tls), "urllib3": Store([url], tls=tls)}
        lease = stores["urllib3"].grant(60)
        kinds = {"lease renewal": lambda s: s.keepalive(lease), "read": lambda s: s.get("/vc/bench/k"),
                 "write": lambda s: s.put("/vc/bench/k", {"payload": "x" * 200})}
        cpu = {(k, s): 0.0 for k in kinds for s in stores}
        wall: dict[tuple[str, str], list[float]] = {(k, s): [] for k in kinds for s in stores}
        for kind, call in kinds.items():
            for store in stores.values():
                for _ in range(BATCH):  # warm: logins, connections, the gateway
                    call(store)
            for _ in range(count // BATCH):
                for name, store in stores.items():
                    began_cpu = time.process_time()
                    for _ in range(BATCH):
                        began = time.perf_counter()
                        call(store)
                        wall[kind, name].append((time.perf_counter() - began) * 1000)
                    cpu[kind, name] += time.process_time() - began_cpu
        n = count // BATCH * BATCH
        print(f"\netcd with TLS and auth on loopback; {n} requests of each kind per session")
        print(f"{'request':<15} {'session':<9} {'CPU us/request':>15} {'vs requests':>12} {'p50 ms':>8}")
        for kind in kinds:
            for name in stores:
                per = cpu[kind, name] / n * 1e6
                base = cpu[kind, "requests"] / n * 1e6
                print(f"{kind:<15} {name:<9} {per:>15.0f} {per / base:>11.2f}x "
                      f"{statistics.median(wall[kind, name]):>8.2f}")
    finally:
        proc.kill()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    run(parser.parse_args().requests)
