"""Edge benchmark: latency and throughput direct-to-app vs through the node router vs
through the edge (TLS) + node router, measured in the same run from the same client host.

    .venv/bin/python bench/edge_bench.py [--requests 200] [--rate 200] [--mb 100]

Brings up its own simulated cluster (rtbXXXX), runs the sample web app and a node router on
home-1 and an edge on the edge host, and gives the client host and the edge a direct path
to the home LAN (a stand-in for the mesh, which is not there yet). Prints one table.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import secrets
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WEBAPP = ROOT / "tests" / "router" / "webapp.py"
DOMAIN = "apps.example.com"
APP_PORT, NODE_PORT = 9001, 7080
# Any single benchmark request slower than this is a stall worth failing loudly on.
REQUEST_TIMEOUT = 30.0


# ---- the client side (runs on the client host) -------------------------------------------

def _conn(target: dict) -> http.client.HTTPConnection:
    if target["tls"]:
        ctx = ssl.create_default_context(cafile=target["ca"])
        conn = http.client.HTTPSConnection(target["addr"], target["port"], timeout=REQUEST_TIMEOUT, context=ctx)
        conn.sock = ctx.wrap_socket(__import__("socket").create_connection((target["addr"], target["port"])),
                                    server_hostname=target["host"])
        return conn
    return http.client.HTTPConnection(target["addr"], target["port"], timeout=REQUEST_TIMEOUT)


def _get(conn: http.client.HTTPConnection, target: dict, path: str) -> int:
    conn.request("GET", path, headers={"Host": target["host"]})
    resp = conn.getresponse()
    n = 0
    while chunk := resp.read(1 << 20):
        n += len(chunk)
    if resp.status != 200:
        raise RuntimeError(f"{target['name']} {path}: HTTP {resp.status}")
    return n


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def measure(target: dict, requests: int, rate: float, mb: int) -> dict:
    conn = _conn(target)
    _get(conn, target, "/health")  # warm: connection, TLS, upstream pools
    lat = []
    for _ in range(requests):
        t = time.perf_counter()
        _get(conn, target, "/health")
        lat.append((time.perf_counter() - t) * 1000)
    # Open loop: requests are due at fixed times, and lateness counts (no hidden stalls).
    import threading
    done: list[float] = []
    lock = threading.Lock()
    start = time.perf_counter() + 0.05
    count = int(rate * 2)

    def worker(idx: int) -> None:
        c = _conn(target)
        for i in range(idx, count, 8):
            due = start + i / rate
            time.sleep(max(0.0, due - time.perf_counter()))
            _get(c, target, "/health")
            with lock:
                done.append((time.perf_counter() - due) * 1000)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    t = time.perf_counter()
    got = _get(conn, target, f"/bulk?mb={mb}")
    bulk = got / (1 << 20) / (time.perf_counter() - t)
    return {"p50": statistics.median(lat), "p99": _pct(lat, 99), "open_p50": statistics.median(done),
            "open_p99": _pct(done, 99), "mbps": bulk}


def client_main(spec: str) -> None:
    args = json.loads(spec)
    out = {t["name"]: measure(t, args["requests"], args["rate"], args["mb"]) for t in args["targets"]}
    print(json.dumps(out))


# ---- the driver (runs on the host) -------------------------------------------------------

@contextlib.contextmanager
def path_to_home_lan(dc, host: str):
    """Stand-in for the mesh: `host` may open TCP connections to the home LAN."""
    from vcapp.dev import netns
    topo, lan = dc.topology, "10.1.0.0/24"
    dc.run(host, ["ip", "route", "replace", lan, "via", topo.host("home").addr])
    rule = ["FORWARD", "-i", "wan", "-o", "br-lan", "-s", topo.host(host).addr, "-p", "tcp", "-j", "ACCEPT"]
    netns.iptables(topo.ns("home"), "-I", rule[0], "1", *rule[1:])
    try:
        yield
    finally:
        netns.iptables(topo.ns("home"), "-D", *rule, check=False)


def run(requests: int, rate: float, mb: int) -> dict:
    from router.edge import Edge
    from router.node import NodeRouter
    from router.routes import AppRoute, EdgeRoutes, NodeRoutes
    from vcapp.dev.cluster import DevCluster
    from vcapp.dev.topology import default

    dc = DevCluster("rtb" + secrets.token_hex(2))
    dc.up(default(dc.name))
    work = Path(tempfile.mkdtemp(prefix="edge-bench-"))
    app = dc.spawn("home-1", [sys.executable, str(WEBAPP), str(APP_PORT), "bench"], stdout=subprocess.PIPE)
    node_ip, edge_ip = dc.topology.host("home-1").addr, dc.topology.host("edge").addr
    node = NodeRouter(work / "node", f"{node_ip}:{NODE_PORT}", lambda h: None, secrets.token_bytes(32),
                      launcher=lambda argv, log: dc.spawn("home-1", argv, log=log))
    edge = Edge(work / "edge", dev=True, launcher=lambda argv, log: dc.spawn("edge", argv, log=log))
    try:
        assert app.stdout.readline().strip() == b"ready"
        with path_to_home_lan(dc, "edge"), path_to_home_lan(dc, "client"):
            node.start()
            edge.start()
            node.update(NodeRoutes.build(DOMAIN, {"bench": AppRoute((f"{node_ip}:{APP_PORT}",), "public")},
                                         trusted_proxies=[f"{edge_ip}/32"]))
            edge.update(EdgeRoutes.build(DOMAIN, ["bench"], [f"{node_ip}:{NODE_PORT}"]))
            ca = work / "root.crt"
            ca.write_text(edge.root_ca_pem())
            host = f"bench.{DOMAIN}"
            targets = [
                {"name": "direct", "addr": node_ip, "port": APP_PORT, "host": host, "tls": False},
                {"name": "node router", "addr": node_ip, "port": NODE_PORT, "host": host, "tls": False},
                {"name": "edge+node (TLS)", "addr": edge_ip, "port": 443, "host": host, "tls": True, "ca": str(ca)},
            ]
            spec = json.dumps({"targets": targets, "requests": requests, "rate": rate, "mb": mb})
            proc = dc.run("client", [sys.executable, __file__, "--client", spec], timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr)
            return json.loads(proc.stdout)
    finally:
        edge.stop()
        node.stop()
        app.kill()
        dc.down()


def table(results: dict, requests: int, rate: float, mb: int) -> str:
    base = results["direct"]
    rows = [f"{'path':<17}{'p50 ms':>8}{'p99 ms':>8}{'open p50':>9}{'open p99':>9}{'MiB/s':>9}"
            f"{'p50 +ms':>9}{'MiB/s ratio':>12}"]
    for name, r in results.items():
        rows.append(f"{name:<17}{r['p50']:>8.2f}{r['p99']:>8.2f}{r['open_p50']:>9.2f}{r['open_p99']:>9.2f}"
                    f"{r['mbps']:>9.0f}{r['p50'] - base['p50']:>9.2f}{r['mbps'] / base['mbps']:>12.2f}")
    return (f"{requests} sequential keep-alive GETs; open loop {rate:.0f} req/s for 2 s (8 connections, latency "
            f"from the due time); one {mb} MiB download. Same run, same client host.\n" + "\n".join(rows))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--client":
        client_main(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--mb", type=int, default=100)
    a = ap.parse_args()
    print(table(run(a.requests, a.rate, a.mb), a.requests, a.rate, a.mb))


if __name__ == "__main__":
    main()
