"""What etcd's TLS and its auth cost a write, and an admin API request: three single-member
etcds side by side on loopback -- plain HTTP; the cluster's TLS (client certificates, CRL:
vcapp/node/etcd.py tls_flags); TLS and auth on as `cluster init` leaves it (auth_flags,
vcapp/state/etcdauth.py: the machine's user and its token) -- written to through the
project's client (vcapp/state/store.py, etcd's JSON gateway), and the admin API (the Flask app, in
process) on each answering `GET /v1/apps` with an admin token (a token look-up and a
listing: two etcd reads). Ratios: tls against plain, auth against tls.

Two ways a machine writes: on a kept-alive connection (the Store's session: every loop and
the API) and with a new Store each time (what a fresh Store or a reconnect pays: the TLS
handshake, certificate checks and the CRL read included, and with auth a refused request,
a login and the retry). Writes go to the servers in turn so load on the machine hits all alike.

    .venv/bin/python bench/etcd_tls_bench.py [--writes 2000]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vcapp import etcdtls
from vcapp.api.app import ApiConfig, create_app  # noqa: E402
from vcapp.node import etcd  # noqa: E402
from vcapp.state import etcdauth, membership
from vcapp.state.store import Store, wait_healthy

CLUSTER_KEY = bytes(range(32))
START_TIMEOUT = 20.0
WARMUP = 50  # first writes grow the database and warm the gateway: not counted


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(work: Path, name: str, tls: etcdtls.Paths | None, auth: bool = False) -> tuple[subprocess.Popen, str]:
    scheme = "https" if tls else "http"
    url, peer = f"{scheme}://127.0.0.1:{free_port()}", f"{scheme}://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [etcd.ETCD_BIN, "--name", name, "--data-dir", str(work / name),
         "--listen-client-urls", url, "--advertise-client-urls", url, "--listen-peer-urls", peer,
         "--initial-advertise-peer-urls", peer, "--initial-cluster", f"{name}={peer}",
         "--logger", "zap", "--log-level", "warn", *(etcd.tls_flags(tls) if tls else []),
         *(etcd.auth_flags() if auth else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, url


def machine_tls(work: Path, revoked: list[str]) -> etcdtls.Paths:
    """Machine "m"'s etcd certificate (for 127.0.0.1), its CA and a revocation list of `revoked`
    serials, in `work`/m, as a machine of the cluster keeps them."""
    key = etcdtls.new_key()
    ca_pem = etcdtls.make_ca(CLUSTER_KEY, "bench")
    tls = etcdtls.save_machine(work / "m", ca_pem, etcdtls.sign(ca_pem, CLUSTER_KEY, key.public_key(), "m",
                                                                "127.0.0.1"), key)
    etcdtls.write_crl(work / "m", CLUSTER_KEY, revoked)
    return tls


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def report(what: str, times: dict[str, list[float]], count: str) -> None:
    p = {name: (statistics.median(t), percentile(t, 99)) for name, t in times.items()}
    cells = " | ".join(f"{name} p50 {p50:6.2f} p99 {p99:6.2f}" for name, (p50, p99) in p.items())
    ratios = " ".join(f"{new}/{old} p50 {p[new][0] / p[old][0]:.2f} p99 {p[new][1] / p[old][1]:.2f}"
                      for old, new in (("plain", "tls"), ("tls", "auth")))
    print(f"{what:17s} ms: {cells} | {ratios}  ({count})")


def api_times(urls: dict[str, str], tls: etcdtls.Paths, requests: int) -> dict[str, list[float]]:
    """Milliseconds of each admin API request, the two APIs asked in turn."""
    clients, headers = {}, {}
    for name, url in urls.items():
        store = Store([url], tls=tls)
        token = membership.create_admin_token(store, "bench")
        headers[name] = {"Authorization": f"Bearer {token}"}
        clients[name] = create_app(ApiConfig(store=lambda store=store: store, node="m")).test_client()
    times: dict[str, list[float]] = {name: [] for name in urls}
    for i in range(WARMUP + requests):
        for name, client in clients.items():
            began = time.perf_counter()
            answer = client.get("/v1/apps", headers=headers[name])
            if answer.status_code != 200:
                raise SystemExit(f"the {name} API answered {answer.status_code}: {answer.get_data()[:200]}")
            if i >= WARMUP:
                times[name].append((time.perf_counter() - began) * 1000)
    return times


def run(writes: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="etcd-tls-bench-"))
    tls = machine_tls(work, revoked=[format(n, "x") for n in range(1, 11)])  # ten removed machines
    procs = []
    try:
        plain_proc, plain_url = start(work, "plain", None)
        tls_proc, tls_url = start(work, "tls", tls)
        auth_proc, auth_url = start(work, "auth", tls, auth=True)
        procs = [plain_proc, tls_proc, auth_proc]
        urls = {"plain": plain_url, "tls": tls_url, "auth": auth_url}
        for url in urls.values():
            wait_healthy(Store([url], tls=tls), START_TIMEOUT)
        etcdauth.enable(Store([auth_url], tls=tls), CLUSTER_KEY, "m")  # as `cluster init` does
        etcdauth.save(tls.auth, etcdauth.machine(CLUSTER_KEY, "m"))  # every Store logs in (if asked)
        value = {"payload": "x" * 200}
        for mode in ("kept-alive", "new connection"):
            kept = {name: Store([url], tls=tls) for name, url in urls.items()}
            times: dict[str, list[float]] = {name: [] for name in urls}
            for i in range(WARMUP + writes):
                for name, url in urls.items():
                    store = kept[name] if mode == "kept-alive" else Store([url], tls=tls)
                    began = time.perf_counter()
                    store.put(f"/vc/bench/{i % 100}", value)
                    if i >= WARMUP:
                        times[name].append((time.perf_counter() - began) * 1000)
            report(mode, times, f"{writes} writes each")
        report("API GET /v1/apps", api_times(urls, tls, writes // 4), f"{writes // 4} requests each")
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=2000)
    run(parser.parse_args().writes)
