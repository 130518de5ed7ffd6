"""etcd's CPU idle and under a small load, and its request latency, by the number of Go
scheduler threads it runs on (GOMAXPROCS) and by its Raft heartbeat, measured in one run.

    .venv/bin/python bench/etcd_procs.py [--rounds 2] [--idle 40] [--rate 50] [--procs 2,1]
                                         [--heartbeats 150,240]

Each setting is a pair of the two (every --procs with every --heartbeats; the election timeout
stays the cluster's).

Per round and per setting, in turn, in a network namespace of its own (loopback only): three
etcd members with the cluster's Raft timers (vcapp/node/etcd.py), plain HTTP (the TLS the
machines speak costs the same in both settings). First --idle seconds with no client: the CPU
of the three members (Raft's heartbeats alone). Then 20 s of a write and a read of one key
through the JSON gateway, --rate pairs a second from one client (a busy cluster's daemons:
bench/footprint.py counts ~13 requests a second on an idle one's leader): the members' CPU
and the pair's latency. Medians over the rounds, with each setting's ratio to the first one.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loopback_ns import run_inside  # noqa: E402
from vcapp.node.etcd import ELECTION_MS, ETCD_BIN, HEARTBEAT_MS  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
LOAD_S = 20.0
MEMBERS = ("m1", "m2", "m3")


def ticks(proc: subprocess.Popen) -> int:
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def post(port: int, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v3/{path}", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=5) as answer:
        return json.loads(answer.read())


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def measure(setting: str, idle: float, rate: float) -> dict:
    """One cluster with `setting`, "GOMAXPROCS/heartbeat ms" (run inside the namespace)."""
    procs, heartbeat = setting.split("/")
    data = tempfile.mkdtemp(prefix="etcd-procs-")
    peers = ",".join(f"{n}=http://127.0.0.1:{2380 + i * 10}" for i, n in enumerate(MEMBERS))
    members = []
    for i, name in enumerate(MEMBERS):
        client, peer = f"http://127.0.0.1:{2379 + i * 10}", f"http://127.0.0.1:{2380 + i * 10}"
        members.append(subprocess.Popen(
            [ETCD_BIN, "--name", name, "--data-dir", f"{data}/{name}", "--listen-client-urls", client,
             "--advertise-client-urls", client, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", peers, "--heartbeat-interval", heartbeat,
             "--election-timeout", str(ELECTION_MS), "--log-level", "error"],
            env=dict(os.environ, GOMAXPROCS=procs), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                post(2379, "kv/put", {"key": b64("warm"), "value": b64("up")})
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the etcd members did not form a cluster in 30 s")
                time.sleep(0.2)
        time.sleep(5)  # the first elections and snapshots settle
        before = sum(ticks(p) for p in members)
        time.sleep(idle)
        idle_pct = 100.0 * (sum(ticks(p) for p in members) - before) / TICK / idle
        latencies, sent = [], 0
        before, began = sum(ticks(p) for p in members), time.monotonic()
        while time.monotonic() - began < LOAD_S:
            start = time.monotonic()
            post(2389, "kv/put", {"key": b64("k"), "value": b64(f"v{sent}")})  # a follower: forwarded to the leader
            post(2389, "kv/range", {"key": b64("k")})
            latencies.append((time.monotonic() - start) * 1000)
            sent += 1
            time.sleep(max(0.0, began + sent / rate - time.monotonic()))
        load_pct = 100.0 * (sum(ticks(p) for p in members) - before) / TICK / (time.monotonic() - began)
        latencies.sort()
        return {"idle": idle_pct, "load": load_pct, "p50": latencies[len(latencies) // 2],
                "p99": latencies[int(len(latencies) * 0.99)]}
    finally:
        for p in members:
            p.kill()
            p.wait()
        subprocess.run(["rm", "-rf", data])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--idle", type=float, default=40.0, help="seconds with no client")
    ap.add_argument("--rate", type=float, default=50.0, help="write+read pairs a second under load")
    ap.add_argument("--procs", default="2,1", help="GOMAXPROCS settings, the first is the baseline")
    ap.add_argument("--heartbeats", default=str(HEARTBEAT_MS), help="Raft heartbeat intervals (ms)")
    ap.add_argument("--inside", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inside:
        print(json.dumps(measure(args.inside, args.idle, args.rate)))
        return
    settings = [f"{p}/{h}" for p in args.procs.split(",") for h in args.heartbeats.split(",")]
    rows: dict[str, list[dict]] = {s: [] for s in settings}
    for r in range(args.rounds):
        for s in settings:
            got = run_inside([sys.executable, __file__, "--inside", s, "--idle", str(args.idle), "--rate",
                              str(args.rate)], migrate=False)
            rows[s].append(got)
            print(f"round {r + 1} GOMAXPROCS/heartbeat={s}: idle {got['idle']:.2f} % of a core (3 members), "
                  f"under load {got['load']:.2f} %, p50 {got['p50']:.2f} ms p99 {got['p99']:.2f} ms", flush=True)

    def med(s: str, key: str) -> float:
        return statistics.median(row[key] for row in rows[s])

    base = settings[0]
    print(f"\netcd, 3 members (election {ELECTION_MS} ms); medians of {args.rounds} rounds ({os.cpu_count()} cores)")
    print(f"{'procs/hb ms':>10}  {'idle %core':>10}  {'vs ' + base:>7}  {f'{args.rate:g}/s %core':>12}  "
          f"{'vs ' + base:>7}  {'p50 ms':>7}  {'p99 ms':>7}")
    for s in settings:
        print(f"{s:>10}  {med(s, 'idle'):>10.2f}  {med(s, 'idle') / med(base, 'idle'):>6.2f}x  "
              f"{med(s, 'load'):>12.2f}  {med(s, 'load') / med(base, 'load'):>6.2f}x  {med(s, 'p50'):>7.2f}  "
              f"{med(s, 'p99'):>7.2f}")


if __name__ == "__main__":
    main()
