"""Edge reload benchmark: requests lost while the edge's Caddy loads a new config.

    .venv/bin/python bench/edge_reload_bench.py [--changes 60] [--every 0.3] [--clients 3]

A custom domain or a machine makes the edge load a new config; a new app or a move only
changes its DNS answers (router/edge_config.py, router/edge_dns.py). This runs the dev edge
(router/edge.py, its own CA) in a fresh network namespace on loopback, in front of a small HTTP
server standing in for the node routers, and changes its routes `--changes` times while curl
clients ask api.D: new connections (as a first `git push` or a new visitor does) over
HTTP/1.1 and HTTP/2, and keep-alive connections (a browser tab, `vcapp logs`). The changes
are one more custom domain each (a reload each), or one more app placed on a router (no
reload); `loads` counts the configs Caddy got. The reload cases run twice, without and with
the kernel handing a closed listener's queued connections to the new one (router/caddy.py
hand_over_accept_queues). The baseline is the same edge and clients without changes (must be
0 failed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loopback_ns import run_inside  # noqa: E402 - after the path set-up, as the other benches

DOMAIN = "reload.test"
HTTPS_PORT, HTTP_PORT = 18443, 18080
KEEPALIVE_BATCH = 100  # requests per curl run of a keep-alive client, at KEEPALIVE_RATE
KEEPALIVE_RATE = "100/s"


class _Routers(BaseHTTPRequestHandler):
    """Answers everything 200: the node routers' health checks and the api requests."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _curl(protocol: str) -> list[str]:
    return ["curl", "-sS", "-k", protocol, "--resolve", f"api.{DOMAIN}:{HTTPS_PORT}:127.0.0.1", "-o", "/dev/null",
            "-w", "%{http_code}\\n"]


def _fresh_client(protocol: str, stop: threading.Event, out: list) -> None:
    """One request per connection until stopped."""
    while not stop.is_set():
        r = subprocess.run([*_curl(protocol), f"https://api.{DOMAIN}:{HTTPS_PORT}/x"], capture_output=True, text=True)
        out.append(r.stdout.strip() if r.stdout.strip() == "200" else (r.stderr.strip() or r.stdout.strip()))


def _keepalive_client(protocol: str, stop: threading.Event, out: list) -> None:
    """Batches of KEEPALIVE_BATCH requests, each batch on one curl's reused connections (curl
    itself sends again what a closed idle connection lost, when it can), until stopped."""
    argv = [*_curl(protocol), "--rate", KEEPALIVE_RATE]
    for i in range(KEEPALIVE_BATCH):  # curl's -o is per URL
        argv += ["-o", "/dev/null", f"https://api.{DOMAIN}:{HTTPS_PORT}/k{i}"]
    while not stop.is_set():
        r = subprocess.run(argv, capture_output=True, text=True)
        codes = r.stdout.split()
        errors = iter(r.stderr.strip().splitlines())  # one line per request curl gave up on
        out += [c if c == "200" else (next(errors, "") if c == "000" else "") or f"HTTP {c}" for c in codes]
        out += ["(not sent)"] * (KEEPALIVE_BATCH - len(codes))


def _routes(change: str, n: int, node: str):
    """The edge's table after `n` changes of kind `change` ("none", "domains", "apps")."""
    from router.routes import EdgeRoutes

    apps = ["a0"] + ([f"a{j}" for j in range(1, n + 1)] if change == "apps" else [])
    domains = {"a0": [f"www{j}.a0.example" for j in range(n)]} if change == "domains" and n else {}
    return EdgeRoutes.build(DOMAIN, apps, [node], domains, {a: [node] for a in apps})


def one_case(args, kind: str, protocol: str, change: str, workdir: Path) -> dict:
    from router.edge import Edge

    routers = ThreadingHTTPServer(("127.0.0.1", 0), _Routers)
    threading.Thread(target=routers.serve_forever, daemon=True).start()
    node = f"127.0.0.1:{routers.server_port}"
    edge = Edge(workdir, https_port=HTTPS_PORT, http_port=HTTP_PORT, dev=True)
    edge.start()
    try:
        edge.update(_routes(change, 0, node))
        time.sleep(1.5)  # the internal CA's certificate, the first health checks
        out: list = []
        stop = threading.Event()
        if kind == "new connections":
            clients = [threading.Thread(target=_fresh_client, args=(protocol, stop, out)) for _ in range(args.clients)]
        else:
            clients = [threading.Thread(target=_keepalive_client, args=(protocol, stop, out))
                       for _ in range(args.clients)]
        for c in clients:
            c.start()
        loads = 0
        for i in range(args.changes):
            time.sleep(args.every)
            if change != "none":
                loads += edge.update(_routes(change, i + 1, node))
        stop.set()
        for c in clients:
            c.join()
    finally:
        edge.stop()
        routers.shutdown()
    failed = [o for o in out if o != "200"]
    return {"kind": kind, "protocol": protocol.lstrip("-"), "change": change, "loads": loads, "sent": len(out),
            "failed": len(failed), "reasons": dict(Counter(failed).most_common(4))}


def run_in_namespace(args, handoff: bool) -> list[dict]:
    """This script again, in a new network namespace with loopback up and the switch set."""
    argv = [sys.executable, __file__, "--inside", "--changes", str(args.changes), "--every", str(args.every),
            "--clients", str(args.clients), *(["--reloads-only"] if not handoff else [])]
    rows = run_inside(argv, migrate=handoff)
    for row in rows:
        row["handoff"] = handoff
    return rows


def inside(args) -> None:
    rows = []
    with TemporaryDirectory(prefix="edge-reload-") as tmp:
        changes = ("domains",) if args.reloads_only else ("none", "domains", "apps")
        for kind in ("new connections", "keep-alive"):
            for protocol in ("--http1.1", "--http2"):
                for change in changes:
                    rows.append(one_case(args, kind, protocol, change, Path(tmp) / f"{len(rows)}"))
    print(json.dumps(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=60)
    parser.add_argument("--every", type=float, default=0.3, help="seconds between changes")
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reloads-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        return inside(args)
    if os.geteuid() != 0:
        raise SystemExit("run as root: the edge runs in a network namespace of its own")
    rows = run_in_namespace(args, False) + run_in_namespace(args, True)
    print(f"{'connections':16} {'proto':7} {'handoff':7} {'changes':8} {'loads':>5} {'sent':>6} {'failed':>6}  reasons")
    for r in rows:
        print(f"{r['kind']:16} {r['protocol']:7} {'on' if r['handoff'] else 'off':7} {r['change']:8} {r['loads']:5d} "
              f"{r['sent']:6d} {r['failed']:6d}  {json.dumps(r['reasons'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
