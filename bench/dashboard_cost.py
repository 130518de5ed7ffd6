"""What the metrics history and dashboard cost the controller, at the cluster's maximum size.

A real single-member etcd on loopback holds 10 machines and 10 apps (2 instances each).
Measured side by side with the baseline of the placer's own pass over the same state:
    - one metrics sample (read state, ingest, write changed chunks, warnings): CPU and wall time
    - bytes written to etcd per sample, and per day (etcd compacts hourly: revisions do not pile up)
    - a week of history: bytes in etcd, keys, load time and memory of a new controller
    - one /v1/dashboard answer (what each open dashboard asks for every 2 s)

    python bench/dashboard_cost.py
"""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vcapp.node import metrics_loop  # noqa: E402
from vcapp.state import keys, metrics
from vcapp.state.store import Store, wait_healthy
from vcapp.views import overview

MACHINES, APPS, INSTANCES, ROUNDS = 10, 10, 2, 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def etcd(tmp: Path) -> tuple[subprocess.Popen, str]:
    client, peer = free_port(), free_port()
    url = f"http://127.0.0.1:{client}"
    proc = subprocess.Popen(["/usr/bin/etcd", "--name", "b", "--data-dir", str(tmp / "etcd"),
                             "--listen-client-urls", url, "--advertise-client-urls", url,
                             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                             "--initial-cluster", f"b=http://127.0.0.1:{peer}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_healthy(Store([url]), 20)
    return proc, url


def seed(store: Store) -> None:
    store.put(keys.CLUSTER, {"name": "bench", "domain": "apps.test"})
    for i in range(MACHINES):
        name = f"m{i}"
        store.put(keys.node(name), {"name": name, "site": "home", "addr": f"10.0.0.{i}", "cpus": 4, "load1": 1.0,
                                    "memory_mb": 8000, "free_memory_mb": 4000, "disk_mb": 100000,
                                    "free_disk_mb": 50000})
        store.put(keys.alive(name), {"at": time.time()})
    for a in range(APPS):
        app = f"app{a}"
        store.put(keys.app(app), {"name": app, "image": "x", "release": 1, "count": INSTANCES})
        for inst in range(INSTANCES):
            node = f"m{(a + inst) % MACHINES}"
            store.put(keys.assign(app, str(inst)), {"app": app, "instance": str(inst), "node": node})
            store.put(keys.status(node, app, str(inst)), {"app": app, "instance": str(inst), "state": "running",
                                                          "health": "healthy", "restarts": 0, "cpu_percent": 1.0,
                                                          "memory_mb": 20.0})


def timed(fn, rounds: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        fn()
    return (1000 * (time.process_time() - cpu) / rounds, 1000 * (time.perf_counter() - wall) / rounds)


def week_of_history(store: Store) -> int:
    """Write a week of samples for every subject straight into etcd; returns bytes stored."""
    now = time.time()
    total = 0
    for subject in [f"node/m{i}" for i in range(MACHINES)] + [f"app/app{a}" for a in range(APPS)]:
        chunks: metrics.Chunks = {}
        cols = metrics.NODE_METRICS if subject.startswith("node/") else metrics.APP_METRICS
        for t in range(int(now - 8 * 86400), int(now), metrics.SAMPLE_EVERY_S):
            metrics.ingest(chunks, t, {m: 50.0 for m in cols})
        ops = metrics.save_ops(subject, chunks, set(chunks), set())
        for i in range(0, len(ops), metrics_loop.MAX_TXN_OPS):
            store.txn([], ops[i:i + metrics_loop.MAX_TXN_OPS])
        total += metrics.size(chunks)
    return total


def main() -> None:
    from vcapp.node.placer_loop import place_once

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = etcd(Path(tmp))
        try:
            store = Store([url])
            seed(store)
            history: dict = {}

            def sample():
                metrics_loop.sample_once(store, history, time.time())
                metrics_loop.warn(store, history, [], time.time())

            placer = timed(lambda: place_once(store), ROUNDS)
            sampling = timed(sample, ROUNDS)
            fine = metrics.TIERS[0]
            current = metrics.chunk_id(fine, metrics.chunk_start(fine, time.time()))
            per_sample = sum(len(json.dumps(s[current])) for s in history.values() if current in s)
            dash = timed(lambda: overview.snapshot(store), ROUNDS)
            stored = week_of_history(store)
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            tracemalloc.start()
            load = timed(lambda: metrics.load_all(store), 3)
            loaded = metrics.load_all(store)
            current, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            week_sample = timed(lambda: metrics_loop.sample_once(store, loaded, time.time()), 10)
            keys_count = store.count(keys.METRICS)
        finally:
            proc.kill()
            proc.wait()
    rows = [
        ("placer pass (baseline), CPU / wall ms", f"{placer[0]:.1f} / {placer[1]:.1f}"),
        ("metrics sample + warnings, CPU / wall ms", f"{sampling[0]:.1f} / {sampling[1]:.1f}"),
        ("  same with a full week of history loaded", f"{week_sample[0]:.1f} / {week_sample[1]:.1f}"),
        ("  share of one core at one sample / 10 s", f"{week_sample[0] / 100:.2f} %"),
        ("/v1/dashboard snapshot, CPU / wall ms", f"{dash[0]:.1f} / {dash[1]:.1f}"),
        ("etcd bytes written per sample (20 fine chunks)", f"{per_sample} (~{per_sample * 8640 / 2**20:.0f} MB/day)"),
        ("week of history in etcd: bytes / keys", f"{stored} / {keys_count}"),
        ("new controller loads it: wall ms / Python heap MB", f"{load[1]:.0f} / {peak / 2**20:.1f}"),
        ("process max RSS MB (everything above)", f"{rss0 / 1024:.0f}"),
    ]
    print(f"{MACHINES} machines, {APPS} apps x {INSTANCES} instances, {ROUNDS} rounds each")
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
