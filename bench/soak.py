"""Chaos soak: a randomized schedule of machine, network and edge faults against a cluster
serving four apps under constant load, and a checker that says what users lost.

    .venv/bin/python bench/soak.py [--minutes 60] [--every 120] [--seed N] [--keep]

Brings up its own simulated cluster (skXXXX: home-1 and home-2 at one site, office-1 at
another, the edge and a client on the simulated internet, installed as `vcapp dev up` does)
and runs, all through the edge from the client host:
  web     two instances of a busybox web page (stateless);
  ledger  one instance whose volume holds an append-only log: POST /cgi-bin/w?id=N appends N
          and fsyncs before answering 200, so an acknowledged write is on the volume;
  jobs    a web process and a worker process (a Procfile-style worker: no HTTP); the worker's
          availability is sampled from `vcapp ps` every SAMPLE_S;
  gate    a page behind the `token` access policy, requested with an access token.
An open-loop client (requests leave on a fixed schedule whatever the latency, keep-alive
connections, 5 s timeout) records every request's outcome for the whole run.

A fault every `--every` seconds, drawn from `--seed` (printed, so a run can be replayed):
kill a machine and boot it later, black-hole one, cut one off its site's switch, flap one's
link (1 s down, 1 s up for FLAP_S), restart the edge, make a site's NAT hard then easy again,
burn a machine's CPU, kill two machines at once, and once per run (when the run has room for
it) power everything off and on. A fault never leaves fewer than one machine up.

The checker prints per app: availability (% of requests answered 2xx), the longest outage and
the fault during it, failed requests per fault kind; for the ledger, acknowledged writes
missing at the end (must be 0), writes applied twice, and acknowledged writes that appear
before a write acknowledged earlier had even been sent (out of order); per machine: times it
was marked down (node.down) with no fault on it (false failovers, must be 0); mesh
connectivity % per pair of machines (pings over the mesh while neither end is faulted); and
our processes' RSS and CPU per machine at the start and at the end (a leak shows as growth).

Issue 20's targets for `--minutes 60 --every 120`: web >= 99.9 % available, the others >= 99 %,
no outage over 30 s except during the all-off fault, 0 acknowledged writes lost, 0 false
failovers, RSS growth of our processes under 10 % from minute 10 to the end.
`--json FILE` also writes the results for a test to read (tests/soak/test_soak.py).
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import secrets
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import ingress_bench  # noqa: E402 - after the path set-up, as the other benches

DOMAIN = "apps.test"
# Requests per second per app from the client: enough that a 1 s stall shows, little enough
# that the client is not what a 2-core host spends its time on.
RATES = {"web": 5.0, "ledger": 2.0, "jobs": 2.0, "gate": 2.0}
REQUEST_TIMEOUT = 5.0
SAMPLE_S = 10.0  # the worker's `vcapp ps`, the mesh pings
FOOTPRINT_S = 10.0  # each RSS/CPU measurement of our processes
# How long each fault lasts before it is undone; the rest of its slot the cluster recovers.
HOLD_S = {"kill": 40, "blackhole": 30, "partition": 30, "flap": 10, "edge-restart": 3, "nat-hard": 40,
          "cpu": 30, "kill-two": 40, "all-off": 20}
FLAP_S = 1.0
# Faults that make a machine unreachable: a node.down of a machine under one of these (or
# within DOWN_GRACE_S after it ended: the transition is written by the next controller tick)
# is expected; any other is a false failover.
REACH_FAULTS = ("kill", "blackhole", "partition", "kill-two", "all-off")
DOWN_GRACE_S = 15.0
# Mesh pings leave out a machine under a fault that cuts its link (those above and a flap) and
# for PING_GRACE_S after: a booted machine's daemon and mesh agent start in that time.
LINK_FAULTS = (*REACH_FAULTS, "flap")
PING_GRACE_S = 45.0
ALL_OFF_MIN_SLOTS = 8  # a run with fewer slots leaves the all-off out (it needs minutes to recover)
SETUP_WAIT = 300.0  # s: every app healthy after install, on a loaded host
FINAL_WAIT = 300.0  # s: the ledger readable again after the last fault
CHECK_BEFORE_S = 12.0  # --checkpoints: the ledger is read this long before the next fault

WEB = ('mkdir -p /www && echo "<html><body><h1>{app}</h1><p>served by instance $HOSTNAME</p></body></html>"'
       ' > /www/index.html && exec httpd -f -p 8080 -h /www')
# The ledger: a CGI script appends the id and fsyncs it through the descriptor it wrote with,
# as a database does, and only then answers 200 (dd exits non-zero when the write, the fsync or
# the close fails); a read answers 200 only with the whole file (a read that fails part-way must
# not look like a loss). A shell append (`echo >> f; sync f`) is not a durable write on a volume:
# the shell ignores the close() that reports a failed upload, and `sync` opens a new descriptor
# whose fsync has nothing left to flush (docs/volumes.md, "Durable writes").
LEDGER_CGI = """#!/bin/sh
if [ "$REQUEST_METHOD" = POST ] && echo "$QUERY_STRING" | dd of=/data/writes oflag=append conv=notrunc,fsync 2>/dev/null
then
  printf 'Content-Type: text/plain\\r\\n\\r\\nok\\n'
elif [ "$REQUEST_METHOD" = GET ] && cat /data/writes > /tmp/read.$$; then
  printf 'Content-Type: text/plain\\r\\n\\r\\n'; cat /tmp/read.$$; rm -f /tmp/read.$$
else
  rm -f /tmp/read.$$
  printf 'Status: 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\nfailed\\n'
fi
"""
LEDGER = ("touch /data/writes && mkdir -p /tmp /www/cgi-bin && echo ok > /www/index.html"
          " && echo {b64} | base64 -d > /www/cgi-bin/w && chmod 755 /www/cgi-bin/w && exec httpd -f -p 8080 -h /www")
WORKER = "while :; do date; sleep 5; done"


# ---- the fault schedule (pure) ---------------------------------------------------------------

@dataclass
class Fault:
    at: float  # s after the run began
    kind: str
    targets: list[str]
    hold: float
    began: float | None = None  # wall clock, once applied
    ended: float | None = None  # wall clock, once undone

    def label(self) -> str:
        return f"{self.kind} {'+'.join(self.targets)}"


KINDS = ("kill", "blackhole", "partition", "flap", "edge-restart", "nat-hard", "cpu", "kill-two", "all-off")


def schedule(seed: int, minutes: float, every: float, machines: list[str], sites: dict[str, str],
             only: tuple[str, ...] = KINDS) -> list[Fault]:
    """One fault per `every` s slot, the first a slot in; kinds (of `only`) cycle through a
    shuffled list so every kind comes up in a long run; the all-off once, in the middle, if the
    run has room."""
    rng = random.Random(seed)
    slots = int(minutes * 60 // every) - 1
    kinds = [k for k in KINDS if k != "all-off" and k in only]
    if not kinds or set(only) - set(KINDS):
        raise ValueError(f"fault kinds must be some of {', '.join(KINDS)} besides all-off, not {only}")
    order: list[str] = []
    while len(order) < slots:
        batch = kinds[:]
        rng.shuffle(batch)
        order += batch
    order = order[:slots]
    if slots >= ALL_OFF_MIN_SLOTS and "all-off" in only:
        order[slots // 2] = "all-off"
    out = []
    for i, kind in enumerate(order):
        if kind in ("kill", "blackhole", "partition", "flap", "cpu"):
            targets = [rng.choice(machines)]
        elif kind == "kill-two":
            targets = sorted(rng.sample(machines, 2))
        elif kind == "nat-hard":
            targets = [rng.choice(sorted(set(sites.values())))]
        elif kind == "edge-restart":
            targets = ["edge"]
        else:
            targets = list(machines)
        out.append(Fault(every * (i + 1), kind, targets, HOLD_S[kind]))
    return out


def unreachable_windows(faults: list[Fault], machine: str, kinds: tuple[str, ...] = REACH_FAULTS,
                        grace: float = DOWN_GRACE_S) -> list[tuple[float, float]]:
    """(from, to) wall-clock windows in which a fault of `kinds` cut `machine` off, grace included."""
    return [(f.began, (f.ended or time.time()) + grace) for f in faults
            if f.began and f.kind in kinds and machine in f.targets]


def fault_at(faults: list[Fault], t: float) -> Fault | None:
    """The most recent fault that began at or before wall-clock time t."""
    began = [f for f in faults if f.began and f.began <= t]
    return began[-1] if began else None


# ---- the checker (pure) ----------------------------------------------------------------------

def app_figures(rows: list[dict], faults: list[Fault]) -> dict:
    """Availability, the longest outage (from the first failed request to the next answered
    one, by send time) with the fault it fell in, and failures per fault kind."""
    rows = sorted(rows, key=lambda r: r["t"])
    ok = [r for r in rows if r["ok"]]
    longest, start, worst_from = 0.0, None, None
    for r in rows:
        if not r["ok"]:
            start = r["t"] if start is None else start
        elif start is not None:
            if r["t"] - start > longest:
                longest, worst_from = r["t"] - start, start
            start = None
    if start is not None and rows and rows[-1]["t"] - start > longest:
        longest, worst_from = rows[-1]["t"] - start, start
    per_kind: dict[str, int] = {}
    for r in rows:
        if not r["ok"]:
            f = fault_at(faults, r["t"])
            kind = f.kind if f else "none"
            per_kind[kind] = per_kind.get(kind, 0) + 1
    during = fault_at(faults, worst_from) if worst_from is not None else None
    return {"sent": len(rows), "ok": len(ok), "availability": 100.0 * len(ok) / len(rows) if rows else 0.0,
            "longest_outage_s": round(longest, 2), "outage_fault": during.label() if during else None,
            "failed_by_fault": per_kind,
            "errors": sorted({r["outcome"] for r in rows if not r["ok"]})[:10]}


def per_fault(rows: list[dict], faults: list[Fault], apps: list[str]) -> list[dict]:
    """For each fault's slot (from its start to the next fault's): per app, requests sent,
    failed, and the longest run of failures (s, by send time)."""
    out = []
    began = [f for f in faults if f.began]
    for i, f in enumerate(began):
        end = began[i + 1].began if i + 1 < len(began) else float("inf")
        slot = {"fault": f.label(), "at": f.at}
        for app in apps:
            mine = sorted((r for r in rows if r["app"] == app and f.began <= r["t"] < end), key=lambda r: r["t"])
            figures = app_figures(mine, [])
            slot[app] = {"sent": len(mine), "failed": len(mine) - figures["ok"],
                         "outage_s": figures["longest_outage_s"]}
        out.append(slot)
    return out


def ledger_check(rows: list[dict], log: list[str]) -> dict:
    """Acknowledged writes missing from the log, writes in it twice, and acknowledged writes
    that come after a write that was sent only once they had been acknowledged."""
    acked = {r["id"]: r for r in rows if r["ok"] and r.get("id") is not None}
    sent = {r["id"]: r for r in rows if r.get("id") is not None}
    seen: dict[str, int] = {}
    order, garbled, holes = [], [], 0
    for line in log:
        text = line.strip()
        # Zeros before a whole write: the size of an append that never got its data (a mount
        # killed mid-write; never acknowledged, or its own id would be missing and counted lost).
        # The write after them is whole: its id counts. Zeros anywhere else garble the line.
        write = text.lstrip("\0")
        wid = write.removeprefix("id=")
        if write == wid or not wid.isdigit():  # a chunk read as NULs, a torn append
            if text:
                garbled.append(line)
            continue
        holes += write != text
        seen[wid] = seen.get(wid, 0) + 1
        order.append(wid)
    lost = sorted((w for w in acked if w not in seen), key=int)
    dupes = sorted((w for w, n in seen.items() if n > 1), key=int)
    # Walk the log backwards keeping the earliest acknowledgement of anything after this point:
    # an entry sent after that acknowledgement must not come before it.
    out_of_order, earliest_ack_after = [], float("inf")
    for wid in reversed(order):
        r = sent.get(wid)
        if r is not None and r["t"] > earliest_ack_after:
            out_of_order.append(wid)
        if wid in acked:
            earliest_ack_after = min(earliest_ack_after, acked[wid]["t"] + acked[wid]["latency"])
    return {"acked": len(acked), "in_log": len(set(order)), "lost": lost, "duplicates": dupes,
            "out_of_order": sorted(set(out_of_order), key=int),
            "unacked_but_written": len([w for w in seen if w not in acked]),
            "garbled": len(garbled), "garbled_sample": [repr(g[:60]) for g in garbled[:3]], "holes": holes}


def false_downs(events: list[dict], faults: list[Fault], machines: list[str]) -> dict[str, list[float]]:
    """machine -> times of node.down events that no fault on it explains."""
    out: dict[str, list[float]] = {m: [] for m in machines}
    for e in events:
        node = e.get("node")
        if e.get("kind") != "node.down" or node not in out:
            continue
        if not any(a <= e["time"] <= b for a, b in unreachable_windows(faults, node)):
            out[node].append(e["time"])
    return out


# ---- the client program (runs on the client host) --------------------------------------------

class _Requester(ingress_bench._Session):
    """A keep-alive connection that sends any request (ingress_bench's framing and reopen rule)."""

    def send(self, request: bytes) -> tuple[int, str]:
        self.request = request
        status, body, closing = self._exchange()
        if closing:
            self.close()
        return status, body


def client(spec_json: str) -> None:
    """Print one JSON line per request, {"app", "t" (wall clock sent), "latency", "ok",
    "outcome", "id" (ledger writes)}, until SIGTERM or the run's end."""
    import signal
    spec = json.loads(spec_json)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    lock = threading.Lock()
    local = threading.local()
    t0 = time.time() + 0.5
    end = t0 + spec["seconds"]

    def request_for(app: dict, n: int) -> tuple[bytes, str | None]:
        host = f"Host: {app['host']}\r\nUser-Agent: vcapp-soak\r\n"
        if app.get("token"):
            host += f"Authorization: Bearer {app['token']}\r\n"
        if app["name"] == "ledger":
            wid = str(n)
            return (f"POST /cgi-bin/w?id={wid} HTTP/1.1\r\n{host}Content-Length: 0\r\n\r\n").encode(), wid
        return f"GET / HTTP/1.1\r\n{host}\r\n".encode(), None

    def one(app: dict, n: int, at: float) -> None:
        sessions = local.__dict__.setdefault("sessions", {})  # this thread's connection per app
        s = sessions.get(app["name"])
        if s is None:
            s = sessions[app["name"]] = _Requester({"addr": spec["edge"], "port": 443, "host": app["host"],
                                                    "ca": spec["ca"]})
        request, wid = request_for(app, n)
        try:
            status, body = s.send(request)
            ok = 200 <= status < 300 and (wid is None or body.strip() == "ok")
            outcome = str(status)
        except Exception as e:  # noqa: BLE001 - every failure is a data point
            s.close()
            ok, outcome = False, type(e).__name__
        row = {"app": app["name"], "t": at, "latency": round(time.time() - at, 4),
               "ok": ok, "outcome": outcome, **({"id": wid} if wid else {})}
        with lock:
            print(json.dumps(row), flush=True)

    plan = sorted(((t0 + i / app["rate"], i, app) for app in spec["apps"]
                   for i in range(int(spec["seconds"] * app["rate"]))), key=lambda p: p[0])
    print("ready", flush=True)
    with ThreadPoolExecutor(max_workers=64) as pool:
        for at, n, app in plan:
            if stopped.is_set() or at > end:
                break
            delay = at - time.time()
            if delay > 0 and stopped.wait(delay):
                break
            pool.submit(one, app, n, at)


# ---- the run ---------------------------------------------------------------------------------

@dataclass
class Run:
    dc: object
    machines: list[str]
    sites: dict[str, str]
    ca: str
    mesh_ips: dict[str, str] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    pings: dict[tuple[str, str], list[tuple[float, bool]]] = field(default_factory=dict)
    worker: list[tuple[float, bool]] = field(default_factory=list)
    burners: list = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)  # the ledger read at the end of each slot
    stop: threading.Event = field(default_factory=threading.Event)

    def vcapp(self, host: str, *args: str, timeout: float = 60) -> str:
        proc = self.dc.run(host, ["vcapp", *args], timeout=timeout)
        if proc.returncode != 0:
            raise SystemExit(f"on {host}: vcapp {' '.join(args)}: {proc.stderr or proc.stdout}")
        return proc.stdout

    def up_machine(self) -> str:
        """A machine that is powered on and not cut off (for the admin's commands)."""
        busy = {t for f in self.faults if f.began and not f.ended for t in f.targets}
        return next((m for m in self.machines if m not in busy), self.machines[0])

    def ask(self, *args: str, timeout: float = 30) -> str | None:
        """A vcapp command on whichever machine answers; None when none does."""
        for m in [self.up_machine(), *self.machines]:
            try:
                proc = self.dc.run(m, ["vcapp", *args], timeout=timeout)
            except Exception:  # noqa: BLE001 - powered off, or too slow: the next one
                continue
            if proc.returncode == 0:
                return proc.stdout
        return None

    # -- faults --
    def apply(self, f: Fault) -> None:
        k, ts = f.kind, f.targets
        if k in ("kill", "kill-two", "all-off", "edge-restart"):
            for t in ts + (["edge"] if k == "all-off" else []):
                self.dc.kill(t)
        elif k == "blackhole":
            self.dc.black_hole(ts[0])
        elif k == "partition":
            self.dc.partition(ts[0])
        elif k == "nat-hard":
            self.dc.set_nat(ts[0], "hard")
        elif k == "cpu":
            self.burners = [self.dc.spawn(ts[0], ["timeout", str(int(f.hold)), "sh", "-c", "while :; do :; done"])
                            for _ in range(2)]
        elif k == "flap":
            down, until = False, time.monotonic() + f.hold
            while time.monotonic() < until:
                down = not down
                self.dc.black_hole(ts[0], down)
                time.sleep(FLAP_S)
            if down:
                self.dc.black_hole(ts[0], on=False)

    def undo(self, f: Fault) -> None:
        k, ts = f.kind, f.targets
        if k in ("kill", "kill-two", "all-off", "edge-restart"):
            for t in (["edge"] if k == "all-off" else []) + ts:
                self.dc.revive(t)
        elif k == "blackhole":
            self.dc.black_hole(ts[0], on=False)
        elif k == "partition":
            self.dc.partition(ts[0], cut=False)
        elif k == "nat-hard":
            self.dc.set_nat(ts[0], "easy")
        elif k == "cpu":
            for b in self.burners:
                b.kill()
            self.burners = []

    def aim(self, f: Fault) -> None:
        """Point a one-machine fault at the machine the ledger runs on now (--aim-ledger)."""
        out = self.ask("ps", "ledger", "--json", timeout=10)
        nodes = [r.get("node") for r in json.loads(out or "[]") if r.get("state") == "running"]
        if nodes and nodes[0] in self.machines:
            f.targets = [nodes[0]]

    def checkpoint(self, rows_path: Path, after: Fault) -> dict:
        """The ledger read now against the writes acknowledged so far: which went missing, and
        after which fault (a loss is found in the slot that caused it, not only at the end)."""
        began = time.time()
        code, body = fetch(self, "ledger", "/cgi-bin/w", max_time=10)
        rows = [json.loads(line) for line in rows_path.read_text().splitlines() if line.startswith("{")]
        mark = {"after": after.label(), "at": after.at, "readable": code == "200"}
        if code == "200":  # against the writes acknowledged before the read began (later ones may miss it)
            done = [r for r in rows if r["app"] == "ledger" and r["t"] + r["latency"] < began]
            got = ledger_check(done, body.splitlines())
            mark.update(acked=got["acked"], lost=len(got["lost"]), first_lost=got["lost"][:10], garbled=got["garbled"])
        self.checks.append(mark)
        said = (f"{mark['acked']} acknowledged, {mark['lost']} missing {mark['first_lost']}, "
                f"{mark['garbled']} garbled lines") if mark["readable"] else f"not readable (HTTP {code or '-'})"
        print(f"    ledger after {mark['after']}: {said}", flush=True)
        return mark

    def run_fault(self, f: Fault) -> None:
        f.began = time.time()
        print(f"  {time.strftime('%H:%M:%S')} {f.label()} for {f.hold:g}s", flush=True)
        self.apply(f)
        if f.kind != "flap":
            self.stop.wait(f.hold)
        self.undo(f)
        f.ended = time.time()

    # -- samplers --
    def link_faulted(self, m: str, t: float) -> bool:
        return any(a <= t <= b for a, b in unreachable_windows(self.faults, m, LINK_FAULTS, PING_GRACE_S))

    def sample_loop(self) -> None:
        """Every SAMPLE_S: mesh pings between machines, and whether jobs' worker runs."""
        while not self.stop.wait(SAMPLE_S):
            now = time.time()
            for a in self.machines:
                for b in self.machines:
                    if a >= b or self.link_faulted(a, now) or self.link_faulted(b, now):
                        continue
                    try:
                        ok = self.dc.run(a, ["ping", "-c1", "-W1", self.mesh_ips[b]], timeout=5).returncode == 0
                    except Exception:  # noqa: BLE001 - the host went off meanwhile
                        continue
                    self.pings.setdefault((a, b), []).append((now, ok))
            out = self.ask("ps", "jobs", "--json", timeout=10)
            if out is None:
                self.worker.append((now, False))
                continue
            rows = json.loads(out or "[]")
            self.worker.append((now, any((r.get("process") or "web") == "worker" for r in rows
                                         if r.get("state") == "running")))


def bring_up(seed: int, name: str | None):
    from builder.baseimage import TINY_IMAGE, tiny_build_command, tiny_context
    from vcapp.dev import platform
    from vcapp.dev.cluster import DevCluster
    from vcapp.dev.topology import default
    dc = DevCluster(name or "sk" + secrets.token_hex(2))
    print(f"cluster {dc.name}, seed {seed}", flush=True)
    dc.up(default(dc.name, 2, 1, "easy"))
    machines = [m.name for m in dc.topology.machines()]
    ctx = tiny_context(dc.host_dir(machines[0]) / "tiny")
    for m in machines:
        proc = dc.run(m, tiny_build_command(ctx), timeout=300)
        if proc.returncode != 0:
            raise SystemExit(f"tiny image on {m}: {proc.stderr}")
    platform.install(dc, say=lambda line: print(f"  {line}", flush=True))
    run = Run(dc, machines, {m.name: m.site for m in dc.topology.machines()}, str(platform.edge_ca(dc)))
    for m in machines:
        run.mesh_ips[m] = json.loads((dc.host_dir(m) / "data" / "node.json").read_text())["mesh"]["ip"]
    first = machines[0]
    base = ["--image", TINY_IMAGE, "--port", "8080", "--memory", "64M", "--health-path", "/"]
    run.vcapp(first, "apps", "create", "web", *base, "--count", "2", "--command", WEB.format(app="web"))
    cgi = base64.b64encode(LEDGER_CGI.encode()).decode()
    run.vcapp(first, "apps", "create", "ledger", *base, "--command", LEDGER.format(b64=cgi),
              "--volume", "data:/data")
    run.vcapp(first, "volumes", "create", "ledger", "data", "--size", "64M", timeout=300)
    run.vcapp(first, "apps", "create", "jobs", *base, "--command", WEB.format(app="jobs"),
              "--process", f"worker={WORKER}")
    run.vcapp(first, "apps", "create", "gate", *base, "--command", WEB.format(app="gate"))
    run.vcapp(first, "access", "gate", "token")
    token = json.loads(run.vcapp(first, "tokens", "create", "gate", "--name", "soak-client", "--json"))["token"]
    return run, token


def fetch(run: Run, app: str, path: str = "/", token: str | None = None, max_time: float = 5) -> tuple[str, str]:
    """(HTTP status, body) of one GET of `app` through the edge from the client host."""
    args = ["curl", "-sk", "--max-time", f"{max_time:g}", "-w", "\n%{http_code}",
            "--resolve", f"{app}.{DOMAIN}:443:{run.dc.topology.host('edge').addr}"]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    proc = run.dc.run("client", [*args, f"https://{app}.{DOMAIN}{path}"], timeout=max_time + 10)
    body, _, code = proc.stdout.rpartition("\n")
    return code, body


def wait_serving(run: Run, token: str, timeout: float) -> None:
    """Every app answers through the edge from the client (the first requests of the soak must
    measure faults, not the first placements)."""
    deadline = time.monotonic() + timeout
    pending = set(RATES)
    while pending and time.monotonic() < deadline:
        for app in sorted(pending):
            code, _ = fetch(run, app, "/cgi-bin/w" if app == "ledger" else "/", token if app == "gate" else None)
            if code == "200":
                pending.discard(app)
        time.sleep(2)
    if pending:
        raise SystemExit(f"not serving after {timeout:.0f}s: {sorted(pending)}")


def read_ledger(run: Run, timeout: float) -> list[str] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, body = fetch(run, "ledger", "/cgi-bin/w", max_time=10)
        if code == "200":
            return body.splitlines()
        time.sleep(3)
    return None


def footprint(run: Run) -> dict:
    """Per machine: our processes' RSS (MB) and CPU (% of a core) over FOOTPRINT_S."""
    from bench import footprint as fp
    got = fp.measure(run.dc, run.machines, FOOTPRINT_S)
    out = {}
    for m in run.machines:
        roles = got.get(m, {})
        out[m] = {"python_mb": round(sum(v["rss_mean"] for r, v in roles.items() if fp.is_python(r)), 1),
                  "all_mb": round(sum(v["rss_mean"] for v in roles.values()), 1),
                  "cpu_pct": round(sum(v["cpu_pct"] for v in roles.values()), 2),
                  "roles": {r: round(v["rss_mean"], 1) for r, v in roles.items()}}
    return out


def grown(base: dict, end: dict, at_least_mb: float = 10.0) -> dict[str, float]:
    """Processes whose RSS grew by `at_least_mb` or more: role -> MB grown."""
    return {r: round(mb - base["roles"].get(r, 0.0), 1) for r, mb in end["roles"].items()
            if mb - base["roles"].get(r, 0.0) >= at_least_mb}


def soak(args) -> dict:
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    began_setup = time.monotonic()
    run, token = bring_up(seed, args.name)
    try:
        wait_serving(run, token, SETUP_WAIT)
        print(f"  set up in {time.monotonic() - began_setup:.0f}s", flush=True)
        run.faults = schedule(seed, args.minutes, args.every, run.machines, run.sites,
                              tuple(args.kinds.split(",")) if args.kinds else KINDS)
        print("schedule: " + "; ".join(f"{f.at:.0f}s {f.label()}" for f in run.faults), flush=True)
        start_fp = footprint(run)
        spec = {"edge": run.dc.topology.host("edge").addr, "ca": run.ca, "seconds": args.minutes * 60,
                "apps": [{"name": a, "host": f"{a}.{DOMAIN}", "rate": r, **({"token": token} if a == "gate" else {})}
                         for a, r in RATES.items()]}
        out_path = Path(run.dc.host_dir("client")) / "soak-client.jsonl"
        with open(out_path, "w") as sink:
            load = run.dc.spawn("client", [sys.executable, __file__, "client", json.dumps(spec)],
                                stdout=sink, stderr=subprocess.STDOUT)
        sampler = threading.Thread(target=run.sample_loop, daemon=True)
        sampler.start()
        t0 = time.monotonic() + 0.5
        mid_fp = None
        for i, f in enumerate(run.faults):
            while time.monotonic() < t0 + f.at:
                if mid_fp is None and args.minutes >= 20 and time.monotonic() - t0 >= 600 and \
                        not any(x.began and not x.ended for x in run.faults):
                    mid_fp = footprint(run)  # minute 10: the leak baseline of a long run
                if args.checkpoints and i and len(run.checks) < i and time.monotonic() > t0 + f.at - CHECK_BEFORE_S:
                    run.checkpoint(out_path, run.faults[i - 1])
                time.sleep(0.2)
            if args.aim_ledger and len(f.targets) == 1 and f.targets[0] in run.machines:
                run.aim(f)
            run.run_fault(f)
        while time.monotonic() < t0 + args.minutes * 60:
            time.sleep(0.5)
        load.wait(timeout=120)
        run.stop.set()
        sampler.join(timeout=60)
        log = read_ledger(run, FINAL_WAIT)
        end_fp = footprint(run)
        events = json.loads(run.ask("events", "--json", "--limit", "10000", timeout=60) or "[]")
        rows = [json.loads(line) for line in out_path.read_text().splitlines() if line.startswith("{")]
        return report(run, seed, args, rows, log, events, start_fp, mid_fp, end_fp)
    finally:
        run.stop.set()
        if not args.keep:
            run.dc.down()
        else:
            print(f"cluster {run.dc.name} left up (--keep)")


def report(run: Run, seed: int, args, rows: list[dict], log: list[str] | None, events: list[dict],
           start_fp: dict, mid_fp: dict | None, end_fp: dict) -> dict:
    apps = {a: app_figures([r for r in rows if r["app"] == a], run.faults) for a in RATES}
    ledger = ledger_check([r for r in rows if r["app"] == "ledger"], log or [])
    if log is None:
        ledger["unreadable"] = True
    downs = false_downs(events, run.faults, run.machines)
    moves = [e for e in events if str(e.get("kind", "")).startswith("failover")
             and not any(f.began and f.kind in REACH_FAULTS and f.began <= e["time"] <= (f.ended or f.began) + 60
                         for f in run.faults)]
    mesh = {f"{a}-{b}": round(100.0 * sum(ok for _, ok in s) / len(s), 1) for (a, b), s in run.pings.items() if s}
    worker = round(100.0 * sum(ok for _, ok in run.worker) / len(run.worker), 1) if run.worker else None
    base_fp = mid_fp or start_fp
    slots = per_fault(rows, run.faults, list(RATES))
    result = {"seed": seed, "minutes": args.minutes, "every": args.every, "per_fault": slots,
              "faults": [asdict(f) for f in run.faults], "checkpoints": run.checks, "apps": apps, "ledger": ledger,
              "worker_running_pct": worker, "false_downs": downs, "unexplained_failovers": len(moves),
              "mesh_pct": mesh, "footprint": {"start": start_fp, "minute10": mid_fp, "end": end_fp},
              "rss_growth_pct": {m: round(100.0 * (end_fp[m]["all_mb"] - base_fp[m]["all_mb"]) / base_fp[m]["all_mb"], 1)
                                 for m in run.machines if base_fp[m]["all_mb"]}}
    print(f"\nsoak: {args.minutes:g} min, a fault every {args.every:g}s, seed {seed} "
          f"(replay: --seed {seed} --minutes {args.minutes:g} --every {args.every:g})")
    print("\nfaults:")
    for f in run.faults:
        print(f"  {f.at:6.0f}s  {f.label():28} held {f.hold:g}s")
    print("\nper fault (its slot, until the next one): failed requests / longest outage s")
    print(f"{'at s':>6}  {'fault':28} " + " ".join(f"{a:>13}" for a in RATES))
    for slot in slots:
        print(f"{slot['at']:6.0f}  {slot['fault']:28} "
              + " ".join(f"{slot[a]['failed']:>6}/{slot[a]['outage_s']:>5.1f}s" for a in RATES))
    print(f"\n{'app':7} {'sent':>6} {'ok %':>8} {'longest outage':>15}  during            failed per fault")
    for a, v in apps.items():
        print(f"{a:7} {v['sent']:6} {v['availability']:8.3f} {v['longest_outage_s']:14.1f}s  "
              f"{str(v['outage_fault']):17} {v['failed_by_fault']}")
    print(f"\nledger: {ledger['acked']} writes acknowledged, {len(ledger['lost'])} lost {ledger['lost'][:20]}, "
          f"{len(ledger['duplicates'])} applied twice, {len(ledger['out_of_order'])} out of order, "
          f"{ledger['unacked_but_written']} written without an acknowledgement (allowed), "
          f"{ledger['garbled']} lines that are no write {ledger['garbled_sample']}, "
          f"{ledger['holes']} runs of zeros before a write (an unacknowledged append's size without its data)"
          + (" -- THE LEDGER WAS NOT READABLE AT THE END" if log is None else ""))
    print(f"jobs' worker running in {worker}% of {len(run.worker)} samples")
    print(f"false failovers (node.down with no fault on the machine): "
          f"{ {m: len(t) for m, t in downs.items()} }; failovers with no machine fault: {len(moves)}")
    print(f"mesh connectivity % per pair (pings while neither end is faulted): {mesh}")
    print(f"\n{'machine':9} {'python MB':>10} {'all MB':>8} {'CPU %':>6}   (start"
          + (" / minute 10" if mid_fp else "") + " / end)")
    for m in run.machines:
        cols = [fp[m] for fp in (start_fp, mid_fp, end_fp) if fp]
        print(f"{m:9} {' / '.join(str(c['python_mb']) for c in cols):>10} "
              f"{' / '.join(str(c['all_mb']) for c in cols):>8} {' / '.join(str(c['cpu_pct']) for c in cols):>6}")
    print(f"RSS growth of our processes (end vs {'minute 10' if mid_fp else 'start'}): {result['rss_growth_pct']}")
    for m in run.machines:
        print(f"  {m}: grew {grown(base_fp[m], end_fp[m])}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "client":
        client(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the loaded run")
    ap.add_argument("--every", type=float, default=120.0, help="seconds between faults")
    ap.add_argument("--seed", type=int, help="the fault schedule's seed (printed; default random)")
    ap.add_argument("--keep", action="store_true", help="leave the cluster up")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--name", help="the simulated cluster's name (default skXXXX)")
    ap.add_argument("--kinds", help=f"only these fault kinds, comma-separated (of {','.join(KINDS)})")
    ap.add_argument("--aim-ledger", action="store_true",
                    help="aim each one-machine fault at the machine the ledger runs on at the time")
    ap.add_argument("--checkpoints", action="store_true",
                    help="read the ledger near the end of each slot and print what is missing so far")
    soak(ap.parse_args())


if __name__ == "__main__":
    main()
