"""Ingress benchmark on the real cluster (mesh, edge, node routers, runtime): direct to the
container vs through the edge, and failover as a client at a constant rate sees it.

    .venv/bin/python bench/ingress_bench.py [--seconds 8] [--rates 50,200]

Brings up its own simulated cluster (ibXXXX: home-1, home-2, office-1, installed as `vcapp
dev up` does), runs two tiny busybox apps held to the home site (`solo`, one instance, and
`duo`, two), and measures with one client program (this file's `client` mode):

- direct: on solo's machine, to the port its container publishes on the loopback, plain HTTP
          (containers publish nowhere else: the node router is the only way in);
- edge:   from the client host on the backbone to https://solo.apps.test via the edge.

Closed loop (CONNS keep-alive connections as fast as they go) gives the maximum requests/s;
open loop (requests sent on a fixed schedule, latency counted from the scheduled time, so a
stall is not hidden) gives p50/p99 at fixed offered rates. The same open loop from the edge
host over the mesh through solo's node router, and from the other home machine through its
own router (which hops to solo's), shows where the edge's added latency goes, and the closed
loops' CPU per request, per process. Then (unless --no-failover) failover at a constant rate
through the edge, for a black-holed machine (iptables DROP inside its namespace) and for a
killed one: seconds to the first success after the outage, and requests lost. Prints a table.

    .venv/bin/python bench/ingress_bench.py --operations 5 [--op-rate 50]

instead measures the operations that must lose nothing (issue 16), each run under open loops
through the edge on the app operated on and on duo: `vcapp restart`, `vcapp secrets set`, a
scale-down from two instances to one, `vcapp node drain` (then undrain), all on solo; a `git
push` of a new version and a `vcapp rollback` (to the release before), of `pushed` (a Dockerfile
on the tiny image, one instance); per operation and app: requests sent, failed, the longest gap
between two answered requests, and p99 latency.
    .venv/bin/python bench/ingress_bench.py --failovers 5

instead loses a machine under a two-instance app (`trio`, free to use any machine) at 50 req/s
through the edge, `--failovers` times each way: powered off (then booted again) and
black-holed (then let through); per event: requests sent, failed, the longest gap between two
answers and p99 latency (issue 16: 0 of 1000 failed, p99 under 2 s).
Also used by tests/ingress/test_edge_cluster.py as its request loop (`client` mode).
"""

from __future__ import annotations

import argparse
import json
import queue
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# A request slower than this counts as failed: a user would have given up.
REQUEST_TIMEOUT = 5.0
# Keep-alive connections of the closed loop: enough to keep 2 cores busy, few enough that
# the client's own threads are not what limits.
CONNS = 8
# Open-loop workers: at 200 req/s and up to REQUEST_TIMEOUT per request, a stall needs this
# many in flight before the schedule itself slips.
OPEN_WORKERS = 64
SERVE = ('mkdir -p /www && echo "<html><body><h1>Hello from {app}</h1><p>served by instance $HOSTNAME</p>'
         '</body></html>" > /www/index.html && exec httpd -f -p 8080 -h /www')
PLACE_WAIT = 120.0  # s: placement + container start + first health check on a loaded host
FAILOVER_RATE = 20.0  # req/s offered during the failover runs
FAILOVER_SECONDS, EVENT_AT = 40.0, 5.0
SETTLE = 20.0  # s after un-black-holing: the machine back in etcd and the mesh before the kill
RESPREAD_WAIT = 240.0  # s: the placer respreads after placer.plan.FLAP_STABLE_AFTER_S (120 s)


# ---- the client program (runs on a host of the cluster) ------------------------------------

def _connect(t: dict) -> socket.socket:
    sock = socket.create_connection((t["addr"], t["port"]), timeout=REQUEST_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if t["ca"]:
        return ssl.create_default_context(cafile=t["ca"]).wrap_socket(sock, server_hostname=t["host"])
    return sock


class _Session:
    """One keep-alive HTTP/1.1 connection, reopened when the server closes it or after any failure.

    Like a browser or Go's HTTP client (RFC 9112 section 9.3.1), a GET that fails on a reused
    connection before any byte of a response arrived is sent once more on a new connection:
    a server may close an idle keep-alive connection at any moment (a node router does on
    every config reload), and that race is not a failed request. Anything else counts.

    Requests are written and responses read by their framing (Content-Length, or to the end of
    a closed connection) on the socket itself: http.client's header parsing costs this 2-core
    host more per request than a browser's would, and more on TLS than on plain connections, so
    it would count as the edge's added latency what is the client's own."""

    def __init__(self, t: dict):
        self.t, self.sock, self.buf, self.got = t, None, b"", False
        self.request = f"GET / HTTP/1.1\r\nHost: {t['host']}\r\nUser-Agent: vcapp-bench\r\n\r\n".encode()

    def open(self) -> None:
        """Connect (and shake hands, for TLS) now, so the first timed request does not pay for it."""
        try:
            self.sock = _connect(self.t)
        except OSError:
            self.sock = None  # the first request tries again, and counts the failure

    def get(self) -> str:
        try:
            status, body, closing = self._exchange()
            if closing:
                self.close()
            if status != 200:
                return str(status)
            return "200:" + body.split("served by instance ")[1].split("<")[0] if "served by" in body else "200"
        except Exception as e:  # noqa: BLE001 - every failure is a data point
            self.close()
            return type(e).__name__

    def _exchange(self) -> tuple[int, str, bool]:
        reused, self.got = self.sock is not None, False
        if not reused:
            self.sock = _connect(self.t)
        try:
            self.sock.sendall(self.request)
            return self._response()
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            if not reused or self.got:
                raise
        self.close()  # the server had closed the idle connection: once more on a new one
        self.sock = _connect(self.t)
        self.sock.sendall(self.request)
        return self._response()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buf = None, b""

    def _response(self) -> tuple[int, str, bool]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {k.strip().lower(): v.strip().lower() for k, _, v in (line.partition(":") for line in lines[1:])}
        closing = fields.get("connection") == "close" or lines[0].startswith("HTTP/1.0")
        if fields.get("transfer-encoding") == "chunked":  # a proxied answer of unknown length
            body = self._chunks()
        elif "content-length" in fields:
            size = int(fields["content-length"])
            while len(self.buf) < size:
                self._fill()
            body, self.buf = self.buf[:size], self.buf[size:]
        else:  # the server ends the body by closing
            while self._fill(eof_ok=True):
                pass
            body, self.buf, closing = self.buf, b"", True
        return status, body.decode(errors="replace"), closing

    def _chunks(self) -> bytes:
        body = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            line, _, self.buf = self.buf.partition(b"\r\n")
            size = int(line.split(b";")[0], 16)
            while len(self.buf) < size + 2:  # the chunk and its CRLF (the last: no trailers)
                self._fill()
            body, self.buf = body + self.buf[:size], self.buf[size + 2:]
            if size == 0:
                return body

    def _fill(self, eof_ok: bool = False) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk and not eof_ok:
            raise ConnectionResetError("the server closed the connection mid-response")
        self.buf += chunk
        self.got = self.got or bool(chunk)
        return bool(chunk)


def client(t: dict, mode: str, rate: float, seconds: float) -> None:
    """Print one JSON line per request: [scheduled s, status, latency s] (closed: no schedule).
    SIGTERM ends the schedule early: no new request leaves, those in flight finish, all are printed."""
    n = int(rate * seconds)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    sessions = [_Session(t) for _ in range(CONNS if mode == "closed" else min(OPEN_WORKERS, n))]
    for s in sessions:  # a browser's connection is open before it asks: keep handshakes out of the figures
        s.open()
    out, lock, start = [], threading.Lock(), time.monotonic() + 0.2
    if mode == "closed":
        def run(s: _Session):
            while time.monotonic() < start + seconds and not stopped.is_set():
                t0 = time.monotonic()
                r = s.get()
                with lock:
                    out.append((t0 - start, r, time.monotonic() - t0))
    else:
        slots: queue.Queue = queue.Queue()
        for i in range(n):
            slots.put(start + i / rate)

        def run(s: _Session):
            while True:
                try:
                    due = slots.get_nowait()
                except queue.Empty:
                    return
                while not stopped.is_set() and due - time.monotonic() > 0:
                    stopped.wait(due - time.monotonic())
                if stopped.is_set():
                    return
                r = s.get()
                with lock:
                    out.append((due - start, r, time.monotonic() - due))
    workers = [threading.Thread(target=run, args=(s,)) for s in sessions]
    print("ready", flush=True)
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for row in sorted(out):
        print(json.dumps(row))


# ---- the benchmark (runs on the host, drives the cluster) ---------------------------------

def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


class Bench:
    def __init__(self, name: str):
        from vcapp.dev.cluster import DevCluster
        from vcapp.dev.topology import default
        self.dc = DevCluster(name)
        self.dc.up(default(name, 2, 1, "easy"))

    def install(self) -> None:
        from builder.baseimage import TINY_IMAGE, tiny_build_command, tiny_context
        from vcapp.dev import platform
        ctx = tiny_context(self.dc.host_dir("home-1") / "tiny")
        for m in self.dc.topology.machines():
            self.must(m.name, tiny_build_command(ctx), 300)
        self.platform = platform.install(self.dc, say=lambda line: print(f"  {line}", flush=True))
        self.ca = str(platform.edge_ca(self.dc))
        self.pushes = 0
        for app, count in (("duo", 2), ("solo", 1)):
            self.must("home-1", ["vcapp", "apps", "create", app, "--image", TINY_IMAGE, "--port", "8080",
                                 "--command", SERVE.format(app=app), "--health-path", "/", "--count", str(count),
                                 "--memory", "64M", "--constraint", "site=home"])

    def push(self) -> None:
        """Commit a new version of `pushed` (a Dockerfile on the tiny image, held to the home
        site, created at its first push) and `git push` it from the first machine, where
        `cluster init` logged the admin in."""
        from builder.baseimage import tiny_web_dockerfile
        repo = self.dc.host_dir(self.platform.first) / "data" / "bench" / PUSHED
        if not (repo / ".git").exists():
            self.must("home-1", ["vcapp", "apps", "create", PUSHED, "--memory", "64M", "--constraint", "site=home"])
            repo.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
        self.pushes += 1
        (repo / "Dockerfile").write_text(tiny_web_dockerfile(f"{PUSHED} v{self.pushes}"))
        for args in (["add", "."], ["commit", "-q", "-m", f"v{self.pushes}"]):
            subprocess.run(["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@vcapp.test",
                            *args], check=True)
        self.must(self.platform.first, ["git", "-C", str(repo), "push", f"{self.platform.api_url}/git/{PUSHED}.git",
                                        "main"], PUSH_TIMEOUT)

    def must(self, host: str, cmd: list[str], timeout: float = 60) -> str:
        proc = self.dc.run(host, cmd, timeout=timeout)
        if proc.returncode != 0:
            raise SystemExit(f"on {host}: {' '.join(cmd)}: {proc.stderr or proc.stdout}")
        return proc.stdout

    def containers(self, app: str) -> set[str]:
        return {r["container"] for r in self.healthy(app, "home-1")}

    def healthy(self, app: str, on: str) -> list[dict]:
        try:
            proc = self.dc.run(on, ["vcapp", "ps", app, "--json"], timeout=30)
        except subprocess.TimeoutExpired:  # an overloaded host: ask again
            return []
        rows = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else []
        return [r for r in rows if r["state"] == "running" and r["health"] == "healthy"]

    def wait_healthy(self, app: str, count: int, on: str = "home-1") -> list[dict]:
        deadline = time.monotonic() + PLACE_WAIT
        while time.monotonic() < deadline:
            rows = self.healthy(app, on)
            if len(rows) >= count:
                return rows
            time.sleep(1)
        raise SystemExit(f"{app}: fewer than {count} healthy instances after {PLACE_WAIT:.0f}s")

    def lose(self, kind: str, victim: str) -> None:
        """`kill`: power the machine off; `blackhole`: drop every packet in and out of it."""
        if kind == "kill":
            self.dc.kill(victim)
            return
        self.dc.black_hole(victim)

    def restore(self, kind: str, victim: str) -> None:
        """Undo `lose`: boot the machine again, or let its packets through."""
        if kind == "kill":
            self.dc.revive(victim)
            return
        self.dc.black_hole(victim, on=False)

    def nodes(self, on: str) -> list[dict]:
        try:
            proc = self.dc.run(on, ["vcapp", "nodes", "--json"], timeout=30)
        except subprocess.TimeoutExpired:
            return []
        return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else []

    def edge_target(self, app: str) -> dict:
        return {"addr": self.dc.topology.host("edge").addr, "port": 443, "host": f"{app}.apps.test", "ca": self.ca}

    def client(self, host: str, target: dict, mode: str, rate: float, seconds: float) -> subprocess.Popen:
        proc = self.dc.spawn(host, [sys.executable, __file__, "client", json.dumps(target), mode, str(rate),
                                    str(seconds)], stdout=subprocess.PIPE, text=True)
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"the client on {host} did not start")
        return proc

    def cpu_ticks(self) -> dict[tuple[str, str], int]:
        """CPU ticks used so far by every live process of the cluster's hosts, summed per (host,
        role): the edge's and the machines' processes and the apps' containers. A client program
        of `measure` has exited by the second sample, so it is not among them."""
        from bench.footprint import role, sample
        hosts = ["client", "edge", *(m.name for m in self.dc.topology.machines())]
        ticks: dict[tuple[str, str], int] = {}
        for host in hosts:
            for pid in self.dc.host_pids(host):
                name, got = role(pid), sample(pid)
                if name and got:
                    ticks[(host, name)] = ticks.get((host, name), 0) + got[1]
        return ticks

    def measure(self, host: str, target: dict, mode: str, rate: float, seconds: float) -> list[tuple]:
        proc = self.client(host, target, mode, rate, seconds)
        out, _ = proc.communicate(timeout=seconds + 120)
        return [tuple(json.loads(line)) for line in out.splitlines() if line.startswith("[")]


def summarize(rows: list[tuple], seconds: float) -> dict:
    ok = [lat for _, r, lat in rows if r.startswith("200")]
    return {"n": len(rows), "ok": len(ok), "rps": len(ok) / seconds, "p50": pct(ok, 50) * 1000,
            "p99": pct(ok, 99) * 1000}


def hops(b: Bench, solo: dict, rate: float, seconds: float) -> list[tuple[str, dict]]:
    """Where the edge's added latency goes: open loop at `rate` to solo from the edge host over
    the mesh through solo's node router, and from the other home machine through its own
    router, which hops to solo's machine's router."""
    nodes = {n["name"]: n for n in json.loads(b.must("home-1", ["vcapp", "nodes", "--json"]))}
    other = next(m for m in ("home-1", "home-2") if m != solo["node"])
    from vcapp.views.ingress import NODE_ROUTER_PORT
    via = lambda m: {"addr": nodes[m]["addr"], "port": NODE_ROUTER_PORT, "host": "solo.apps.test", "ca": ""}  # noqa: E731
    legs = [("edge host -> node router -> container", "edge", via(solo["node"])),
            (f"{other} -> its router -> hop -> container", other, via(other))]
    return [(label, summarize(b.measure(host, t, "open", rate, seconds), seconds)) for label, host, t in legs]


def failover(b: Bench, kind: str, apps: tuple[str, ...]) -> dict:
    """Constant-rate clients on each app through the edge; `kind` happens to solo's machine at EVENT_AT."""
    victim = b.wait_healthy("solo", 1, on="home-1" if kind == "blackhole" else "home-2")[0]["node"]
    clients = {app: b.client("client", b.edge_target(app), "open", FAILOVER_RATE, FAILOVER_SECONDS) for app in apps}
    time.sleep(EVENT_AT)
    b.lose(kind, victim)
    result = {"victim": victim}
    for app, proc in clients.items():
        out, _ = proc.communicate(timeout=FAILOVER_SECONDS + 120)
        rows = [tuple(json.loads(line)) for line in out.splitlines() if line.startswith("[")]
        failed = [(t, r) for t, r, _ in rows if not r.startswith("200")]
        after = [t for t, r, _ in rows if r.startswith("200") and failed and t > failed[0][0]]
        result[app] = {"sent": len(rows), "lost": len(failed),
                       "first_fail": failed[0][0] - EVENT_AT if failed else None,
                       "back": (after[0] - EVENT_AT) if after else None,
                       "last_fail": failed[-1][0] - EVENT_AT if failed else None,
                       "errors": sorted({r for _, r in failed})}
    if kind == "blackhole":
        b.restore(kind, victim)
    return result


def clock() -> str:
    """The wall time to the millisecond, as the daemons' and routers' logs show it (UTC)."""
    now = time.time()
    return time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}"


OP_SECONDS, OP_AT = 30.0, 3.0  # each operation's loop, and when in it the operation begins
# The git-pushed app, and how long its push may take (a one-line Dockerfile on a local image).
PUSHED, PUSH_TIMEOUT = "pushed", 300.0
OPERATIONS = ("restart", "secrets set", "scale 2 -> 1", "node drain", "git push", "rollback")


def operations(b: Bench, rate: float, only: set[str] | None = None) -> list[tuple[str, str, dict]]:
    """One run of each zero-loss operation (or of those named in `only`); (operation, app, figures)
    rows: the app operated on, and duo (two instances) beside it."""
    def solo_at_two() -> None:
        b.must("home-1", ["vcapp", "scale", "solo", "--count", "2"])
        b.wait_healthy("solo", 2)

    def drain() -> None:
        victim = b.wait_healthy("solo", 1)[0]["node"]
        b.must("home-1", ["vcapp", "node", "drain", victim])
        b.drained = victim

    def pushed_twice() -> None:  # a rollback needs a release before the current one
        while b.pushes < 2:
            b.push()
        b.wait_healthy(PUSHED, 1)

    def replaced(app: str, before: set[str]) -> bool:
        now = b.containers(app)
        return bool(now) and not now & before

    def one_left(app: str, before: set[str]) -> bool:
        now = b.containers(app)
        return len(now) == 1 and now < before

    def moved_off(app: str, before: set[str]) -> bool:  # the drained machine runs none of solo's and duo's
        rows = {a: b.healthy(a, "home-1") for a in (app, "duo")}
        return bool(rows[app]) and len(rows["duo"]) == 2 and all(
            r["node"] != b.drained for found in rows.values() for r in found)

    # (name, app operated on, before the loops, the operation, done(app, containers before))
    ops = [("restart", "solo", None, lambda: b.must("home-1", ["vcapp", "restart", "solo"]), replaced),
           ("secrets set", "solo", None, lambda: b.must("home-1", ["vcapp", "secrets", "set", "solo",
                                                                  f"RUN={secrets.token_hex(4)}"]), replaced),
           ("scale 2 -> 1", "solo", solo_at_two,
            lambda: b.must("home-1", ["vcapp", "scale", "solo", "--count", "1"]), one_left),
           ("node drain", "solo", None, drain, moved_off),
           ("git push", PUSHED, pushed_twice, b.push, replaced),
           # the newest release before the current one with other code
           ("rollback", PUSHED, pushed_twice, lambda: b.must("home-1", ["vcapp", "rollback", PUSHED]), replaced)]
    assert [op[0] for op in ops] == list(OPERATIONS)
    rows = []
    for name, app, before, act, done in ops:
        if only and name not in only:
            continue
        if before:
            before()
        b.wait_healthy(app, 1)
        had = b.containers(app)
        clients = {a: b.client("client", b.edge_target(a), "open", rate, OP_SECONDS) for a in (app, "duo")}
        time.sleep(OP_AT)
        print(f"  {name} at {clock()}", flush=True)
        began = time.monotonic()
        act()
        took = None  # s from the operation's start until it is done: it must fall inside the loops
        while time.monotonic() - began < OP_SECONDS - OP_AT:
            if done(app, had):
                took = time.monotonic() - began
                break
            time.sleep(0.25)
        for a, proc in clients.items():
            out, _ = proc.communicate(timeout=OP_SECONDS + 120)
            figures = loss(json.loads(line) for line in out.splitlines() if line.startswith("["))
            rows.append((name, a, {**figures, "done": took}))
        if getattr(b, "drained", None):
            b.must("home-1", ["vcapp", "node", "undrain", b.drained])
            b.drained = None
            b.wait_healthy("duo", 2)
    return rows


FAILOVERS_RATE, FAILOVERS_SECONDS, FAILOVERS_AT = 50.0, 20.0, 4.0  # 1000 requests, the event 4 s in
BACK_WAIT = 180.0  # s: a booted machine's daemon, etcd member and mesh back; its lease again


def failovers(b: Bench, runs: int) -> list[tuple[str, str, dict]]:
    """`runs` kills and `runs` black holes of a machine running one of trio's two instances."""
    from builder.baseimage import TINY_IMAGE
    machines = [m.name for m in b.dc.topology.machines()]
    b.must("home-1", ["vcapp", "apps", "create", "trio", "--image", TINY_IMAGE, "--port", "8080", "--command",
                      SERVE.format(app="trio"), "--health-path", "/", "--count", "2", "--memory", "64M"])
    rows = []
    for run in range(runs):
        for kind in ("kill", "blackhole"):
            began = time.monotonic()
            while len(spread := sorted({r["node"] for r in b.wait_healthy("trio", 2, on=machines[0])})) < 2:
                if time.monotonic() - began > RESPREAD_WAIT:  # the placer respreads a crowded app
                    raise SystemExit(f"trio not on two machines after {RESPREAD_WAIT:.0f}s")
                time.sleep(2)
            victim = spread[run % 2]
            observer = next(m for m in machines if m != victim)
            client = b.client("client", b.edge_target("trio"), "open", FAILOVERS_RATE, FAILOVERS_SECONDS)
            time.sleep(FAILOVERS_AT)
            print(f"  {kind} {victim} at {clock()}", flush=True)
            b.lose(kind, victim)
            out, _ = client.communicate(timeout=FAILOVERS_SECONDS + 120)
            figures = loss(json.loads(line) for line in out.splitlines() if line.startswith("["))
            rows.append((kind, victim, figures))
            print(f"  run {run + 1} {kind} {victim}: {figures}", flush=True)
            b.restore(kind, victim)
            began = time.monotonic()
            while not any(n["name"] == victim and n["up"] for n in b.nodes(observer)):
                if time.monotonic() - began > BACK_WAIT:
                    raise SystemExit(f"{victim} not up again {BACK_WAIT:.0f}s after the {kind} ended")
                time.sleep(2)
            machines = [victim, *[m for m in machines if m != victim]]  # ask a machine known up
    return rows


def print_failovers(rows: list[tuple[str, str, dict]], runs: int) -> None:
    print(f"\na machine under trio (2 instances) lost, {FAILOVERS_RATE:.0f} req/s through the edge for "
          f"{FAILOVERS_SECONDS:.0f} s, the event {FAILOVERS_AT:.0f} s in; {runs} runs each")
    print(f"{'event':11} {'victim':9} {'sent':>5} {'failed':>7} {'max gap s':>10} {'p99 ms':>8}")
    for kind, victim, f in rows:
        print(f"{kind:11} {victim:9} {f['sent']:5} {f['failed']:7} {f['max_gap']:10.2f} {f['p99']:8.1f}")
    for kind in dict.fromkeys(r[0] for r in rows):
        mine = [f for k, _, f in rows if k == kind]
        print(f"{kind + ' (all)':21} {sum(f['sent'] for f in mine):5} {sum(f['failed'] for f in mine):7} "
              f"{max(f['max_gap'] for f in mine):10.2f} {max(f['p99'] for f in mine):8.1f}")


def loss(rows) -> dict:
    """sent, failed, the longest gap between two answers (s, by completion time), p99 (ms), and
    each failure's (scheduled time, outcome)."""
    rows = list(rows)
    done = sorted(t + lat for t, r, lat in rows if r.startswith("200"))
    gaps = [b - a for a, b in zip(done, done[1:])]
    failed = [(round(t, 2), r) for t, r, _ in rows if not r.startswith("200")]
    return {"sent": len(rows), "failed": len(failed), "max_gap": max(gaps, default=float("nan")),
            "p99": pct([lat for _, _, lat in rows], 99) * 1000, "errors": failed}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each throughput/latency run")
    ap.add_argument("--rates", default="50,200", help="offered rates of the open-loop runs, req/s")
    ap.add_argument("--keep", action="store_true", help="leave the cluster up")
    ap.add_argument("--no-failover", action="store_true", help="throughput and latency only")
    ap.add_argument("--operations", type=int, default=0, help="runs of the zero-loss operations, instead of the rest")
    ap.add_argument("--op-rate", type=float, default=50.0, help="req/s per app during the operations")
    ap.add_argument("--only", default="", help="with --operations: those operations only, comma-separated "
                    f"({', '.join(OPERATIONS)})")
    ap.add_argument("--failovers", type=int, default=0, help="runs of each machine loss under trio, instead of the rest")
    args = ap.parse_args()
    b = Bench("ib" + secrets.token_hex(2))
    print(f"cluster {b.dc.name}", flush=True)
    try:
        b.install()
        solo = b.wait_healthy("solo", 1)[0]
        b.wait_healthy("duo", 2)
        if args.failovers:
            print_failovers(failovers(b, args.failovers), args.failovers)
            return
        if args.operations:
            rows = []
            for run in range(args.operations):
                for row in operations(b, args.op_rate, set(filter(None, args.only.split(","))) or None):
                    print(f"  run {run + 1}: {row}", flush=True)
                    rows.append(row)
            print_operations(rows, args.op_rate, args.operations)
            return
        lan = solo["node"]  # the direct client runs beside the container
        direct = {"addr": "127.0.0.1", "port": solo["host_port"], "host": "solo", "ca": ""}
        deadline = time.monotonic() + PLACE_WAIT
        while not b.measure("client", b.edge_target("solo"), "open", 2, 1)[0][1].startswith("200"):
            if time.monotonic() > deadline:
                raise SystemExit("solo never answered through the edge")
        table, cpu = [], {}
        for label, mode, rate in [("max req/s (closed, keep-alive)", "closed", 0.0)] + \
                [(f"open loop {r} req/s", "open", float(r)) for r in args.rates.split(",")]:
            got = {}
            for path, host, target in (("direct", lan, direct), ("edge", "client", b.edge_target("solo"))):
                before = b.cpu_ticks() if mode == "closed" else {}
                got[path] = summarize(b.measure(host, target, mode, rate, args.seconds), args.seconds)
                if mode == "closed":
                    cpu[path] = cpu_spent(before, b.cpu_ticks(), got[path]["ok"])
            d, e = got["direct"], got["edge"]
            table.append((label, d, e))
            print(f"  {label}: direct {d} edge {e}", flush=True)
        rate = float(args.rates.split(",")[0])
        legs = hops(b, solo, rate, args.seconds)
        for label, r in legs:
            print(f"  {label}: {r}", flush=True)
        fo = []
        if args.no_failover:
            print_tables(b, solo, lan, args, table, legs, rate, fo)
            print_cpu(cpu)
            return
        fo.append(("black hole", failover(b, "blackhole", ("solo", "duo"))))
        time.sleep(SETTLE)
        # The black hole moved duo's instance off that machine, next to its twin; the placer
        # spreads them again once the machine has been back FLAP_STABLE_AFTER_S. The kill
        # below is meant to hit a machine holding one of two instances, so wait for that.
        began = time.monotonic()
        while len({r["node"] for r in b.healthy("duo", "office-1")}) < 2:
            if time.monotonic() - began > RESPREAD_WAIT:
                raise SystemExit(f"duo not spread over two machines {RESPREAD_WAIT:.0f}s after the black hole")
            time.sleep(2)
        print(f"  duo on two machines again {time.monotonic() - began + SETTLE:.0f}s after the black hole ended",
              flush=True)
        fo.append(("kill", failover(b, "kill", ("solo", "duo"))))
        print_tables(b, solo, lan, args, table, legs, rate, fo)
        print_cpu(cpu)
    finally:
        if not args.keep:
            b.dc.down()


def print_operations(rows: list[tuple[str, str, dict]], rate: float, runs: int) -> None:
    print(f"\nzero-loss operations through the edge, {rate:.0f} req/s per app for {OP_SECONDS:.0f} s, "
          f"the operation {OP_AT:.0f} s in; {runs} runs (solo and {PUSHED}: 1 instance, duo: 2); done: "
          f"from the operation's start until every old instance of the app is gone (- : not within the loop)")
    print(f"{'operation':14} {'app':6} {'sent':>6} {'failed':>7} {'max gap s (worst)':>18} {'p99 ms (worst)':>15} "
          f"{'done s (median, worst)':>23}")
    for op, app in dict.fromkeys((o, a) for o, a, _ in rows):
        mine = [f for o, a, f in rows if o == op and a == app]
        done = sorted(f["done"] for f in mine if f["done"] is not None)
        took = f"{done[len(done) // 2]:.1f}, {done[-1]:.1f}" if len(done) == len(mine) else f"- in {len(mine) - len(done)}"
        print(f"{op:14} {app:6} {sum(f['sent'] for f in mine):6} {sum(f['failed'] for f in mine):7} "
              f"{max(f['max_gap'] for f in mine):18.2f} {max(f['p99'] for f in mine):15.1f} {took:>23}")


def cpu_spent(before: dict, after: dict, answered: int) -> dict[tuple[str, str], float]:
    """CPU ms per answered request of each (host, role) between two `Bench.cpu_ticks`; a
    process born in between counts from zero."""
    from bench.footprint import TICK
    tick_ms = 1000 / TICK
    return {k: (v - before.get(k, 0)) * tick_ms / max(answered, 1) for k, v in after.items()
            if v - before.get(k, 0) > 0}


def print_cpu(cpu: dict[str, dict[tuple[str, str], float]]) -> None:
    """Where the closed loop's CPU goes, per answered request: on a host whose cores are all
    busy, throughput is the cores' time over this total, so the edge's ratio to direct is
    (about) direct's total over the edge's."""
    if not cpu:
        return
    print("\nCPU per answered request in the closed loops (ms of one core; every process of the cluster "
          "but the client programs)")
    keys = sorted({k for run in cpu.values() for k in run}, key=lambda k: -max(r.get(k, 0) for r in cpu.values()))
    print(f"{'host':10} {'process':34} " + " ".join(f"{p:>8}" for p in cpu))
    for host, name in keys:
        vals = [cpu[p].get((host, name), 0.0) for p in cpu]
        if max(vals) >= 0.005:
            print(f"{host:10} {name[:34]:34} " + " ".join(f"{v:8.3f}" for v in vals))
    print(f"{'total':45} " + " ".join(f"{sum(run.values()):8.3f}" for run in cpu.values()))


def print_tables(b: Bench, solo: dict, lan: str, args, table: list, legs: list, rate: float, fo: list) -> None:
    """The tables of the run: throughput and latency, where the latency goes, failover."""
    print(f"\ningress bench on {b.dc.name} (solo on {solo['node']}, direct client on {lan}, "
          f"edge client on the client host; {args.seconds:.0f} s per run)")
    print(f"{'run':34} {'direct':>26} {'edge':>26} {'edge/direct':>12}")
    for label, d, e in table:
        print(f"{label:34} {d['rps']:7.0f} req/s {'':12} {e['rps']:7.0f} req/s {'':12} {e['rps'] / d['rps']:11.2f}x")
        print(f"{'  p50 / p99 ms':34} {d['p50']:9.1f} / {d['p99']:8.1f} ms  {e['p50']:9.1f} / {e['p99']:8.1f} ms"
              f"  {e['p50'] / d['p50']:5.1f}x/{e['p99'] / d['p99']:4.1f}x"
              f"  (lost {d['n'] - d['ok']}/{e['n'] - e['ok']})")
    print(f"\nwhere the latency goes, open loop {rate:.0f} req/s (client -> edge: the edge row above)")
    for label, r in legs:
        print(f"{label:40} p50 {r['p50']:6.1f} ms  p99 {r['p99']:7.1f} ms  (lost {r['n'] - r['ok']})")
    if not fo:
        return
    print(f"\nfailover through the edge at {FAILOVER_RATE:.0f} req/s per app, event at t=0 on solo's machine")
    print(f"{'event':12} {'victim':9} {'app':5} {'sent':>5} {'lost':>5} {'first fail s':>13} {'success again s':>16} "
          f"{'last fail s':>12}  errors")
    fmt = lambda v: f"{v:.2f}" if v is not None else "-"  # noqa: E731
    for kind, res in fo:
        for app in ("solo", "duo"):
            r = res[app]
            print(f"{kind:12} {res['victim']:9} {app:5} {r['sent']:5} {r['lost']:5} {fmt(r['first_fail']):>13} "
                  f"{fmt(r['back']):>16} {fmt(r['last_fail']):>12}  {','.join(r['errors'])}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        client(json.loads(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
    else:
        main()
