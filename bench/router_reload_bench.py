"""Router reload benchmark: requests lost between the edge and a node router while the
cluster changes: an app created (the router loads a new config) or an app's instance replaced
(a deploy, a move: only the router's answers change, router/node_dns.py).

    .venv/bin/python bench/router_reload_bench.py [--reloads 60] [--every 0.3] [--clients 4] [--rounds 4]

In a network namespace of its own (loopback only, the kernel handing queued connections to the
new listeners as the daemons set it: router/caddy.py): a small app; a real node router
(router/node.py) in front of it; and a Caddy in front of the router with the edge's proxy
settings (router/caddyjson.py). Each run makes `--reloads` changes, one every `--every` s:
"apps" runs place one more app each time (a reload each), with one of three edge->router
transports: "kept alive" (the edge's), "fresh writes" (requests the proxy does not resend,
POST and the like, each on a new connection; the others kept alive) and "new connections"
(keep-alive off); the "moves" run (the edge's transport) starts a new instance of the app each
time, routes to it, and once the router says the switch is in force (NodeRouter.settled)
stops the old one, as a deploy does (vcapp/state/routeswitch.py). `--clients` keep-alive
clients send GET and POST in turn, each POST a new order; "lost" counts answers other than 200
(503: the router was resting after failures), "twice" orders the app got more than once. First
a baseline run of each without changes (must lose nothing), then `--rounds` runs of each.

What it shows: reloads lose requests whatever the transport. Caddy replaces its servers at each
load, and Go's HTTP/1 server drops a request it reads after its shutdown began (it closes the
connection unanswered): the old server still owns the connections it accepted, kept alive or
just opened (while both configs' listeners exist, the kernel spreads new connections over
them). The request never reached a handler, but the edge cannot tell that from a router that
died with it, so only idempotent requests are sent again. Moves reload nothing, and lose
nothing."""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import os
import socket
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
TRANSPORTS = ("kept alive", "fresh writes", "new connections")
# (transport, change) of each run: what the cluster changes while the clients send
CASES = (*((t, "apps") for t in TRANSPORTS), ("kept alive", "moves"))


class _App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    orders: Counter = Counter()
    lock = threading.Lock()

    def _answer(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.command == "POST":
            with self.lock:
                _App.orders[data] += 1
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(port: int, transport: str, n: int, stop: threading.Event, out: list) -> None:
    """GET and POST in turn on one kept-alive connection (a new one after an error)."""
    conn = None
    i = 0
    while not stop.is_set():
        method = "POST" if i % 2 else "GET"
        body = f"{transport}/{n}/{i}".encode() if method == "POST" else None
        i += 1
        try:
            conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request(method, "/orders", body=body, headers={"Host": f"shop.{DOMAIN}"})
            resp = conn.getresponse()
            resp.read()
            out.append((transport, method, resp.status))
        except (OSError, http.client.HTTPException) as e:
            out.append((transport, method, type(e).__name__))
            conn = None
        time.sleep(0.01)


def _instance() -> ThreadingHTTPServer:
    app = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    return app


def _retire(app: ThreadingHTTPServer) -> None:
    """Stop taking connections, as a retired instance does; the requests it has finish."""
    app.shutdown()
    app.server_close()


def one_run(args, transport: str, change: str, changing: bool, workdir: Path) -> dict:
    """One transport before one router, changed `--reloads` times (or never: the baseline)."""
    from router import caddyjson
    from router.caddy import CaddyProcess
    from router.node import NodeRouter
    from router.routes import AppRoute, NodeRoutes

    _App.orders = Counter()
    instances = [_instance()]
    router_port = _free_port()
    router = NodeRouter(workdir / "router", f"127.0.0.1:{router_port}", lookup=lambda token: None, key=b"k" * 32)
    front = CaddyProcess(workdir / "front")

    def table(n: int) -> NodeRoutes:
        backend = f"127.0.0.1:{instances[-1].server_port}"
        apps = {"shop": AppRoute((backend,), local=(backend,))}
        apps.update({f"a{j}": AppRoute((f"127.0.0.1:{30000 + j}",)) for j in range(n)})
        return NodeRoutes.build(DOMAIN, apps)

    router.start()
    front.start()
    try:
        router.update(table(0))
        proxy = caddyjson.reverse_proxy([f"127.0.0.1:{router_port}"], None,
                                        try_duration=caddyjson.PREFERRED_TRY_DURATION)
        port = _free_port()
        if transport == "new connections":
            proxy["transport"]["keep_alive"] = {"enabled": False}
        elif transport == "fresh writes":  # only requests that are not resent: a connection each
            fresh = copy.deepcopy(proxy)
            fresh["transport"]["keep_alive"] = {"enabled": False}
            proxy = {"handler": "subroute", "routes": [
                {"match": [{"method": list(caddyjson.RETRY_METHODS)}], "handle": [proxy]}, {"handle": [fresh]}]}
        config = caddyjson.base_document(str(front.admin_socket), str(front.storage_dir))
        config["apps"]["http"] = {"servers": {"front": {"listen": [f"127.0.0.1:{port}"],
                                                        "routes": [{"handle": [proxy]}]}}}
        front.admin.load(config)
        time.sleep(0.5)
        out: list = []
        stop = threading.Event()
        clients = [threading.Thread(target=_client, args=(port, transport, n, stop, out)) for n in range(args.clients)]
        for c in clients:
            c.start()
        loads = changes = 0
        for i in range(args.reloads):
            time.sleep(args.every)
            if not changing:
                continue
            if change == "apps":
                loads += router.update(table(i + 1))
            else:
                instances.append(_instance())
                loads += router.update(table(0))
                while not router.settled():
                    time.sleep(0.05)
                _retire(instances.pop(0))
            changes += 1
        stop.set()
        for c in clients:
            c.join()
    finally:
        front.stop()
        router.stop()
        for app in instances:
            _retire(app)
    return {"transport": transport, "change": change, "changes": changes, "reloads": loads, "sent": len(out),
            "lost GET": sum(1 for o in out if o[1] == "GET" and o[2] != 200),
            "lost POST": sum(1 for o in out if o[1] == "POST" and o[2] != 200),
            "twice": sum(1 for k in _App.orders.values() if k > 1),
            "answers": dict(Counter(str(o[2]) for o in out if o[2] != 200))}


def inside(args) -> None:
    """A baseline per case, then `--rounds` rounds of changes, the cases in turn."""
    rows = []
    with TemporaryDirectory(prefix="router-reload-") as tmp:
        work = Path(args.keep or tmp)
        for changing in [False] + [True] * args.rounds:
            for transport, change in CASES:
                row = one_run(args, transport, change, changing, work / f"run{len(rows)}")
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
    print(json.dumps(rows))


def total(rows: list[dict], transport: str, change: str, changed: bool) -> dict:
    mine = [r for r in rows if (r["transport"], r["change"]) == (transport, change) and bool(r["changes"]) == changed]
    out = {k: sum(r[k] for r in mine) for k in ("changes", "reloads", "sent", "lost GET", "lost POST", "twice")}
    out["answers"] = dict(sum((Counter(r["answers"]) for r in mine), Counter()))
    out["lost POST per run"] = [r["lost POST"] for r in mine]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reloads", type=int, default=60)
    parser.add_argument("--every", type=float, default=0.3, help="seconds between reloads")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4, help="runs with reloads per transport")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--keep", help="keep the Caddy logs in this directory")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        return inside(args)
    if os.geteuid() != 0:
        raise SystemExit("run as root: the routers run in a network namespace of their own")
    argv = [sys.executable, __file__, "--inside", "--reloads", str(args.reloads), "--every", str(args.every),
            "--clients", str(args.clients), "--rounds", str(args.rounds),
            *(["--keep", str(Path(args.keep).resolve())] if args.keep else [])]
    rows = run_inside(argv, migrate=True)
    print(f"{'transport':15} {'change':6} {'changes':>7} {'reloads':>7} {'sent':>6} {'lost GET':>8} {'lost POST':>9} "
          f"{'twice':>5}  lost POST per run, answers")
    for changed in (False, True):
        for h, change in CASES:
            t = total(rows, h, change, changed)
            print(f"{h:15} {change:6} {t['changes']:7d} {t['reloads']:7d} {t['sent']:6d} {t['lost GET']:8d} "
                  f"{t['lost POST']:9d} {t['twice']:5d}  {t['lost POST per run']} {json.dumps(t['answers'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
