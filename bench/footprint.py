"""Footprint benchmark: memory and CPU of every process a machine runs for vcapp, idle.

    .venv/bin/python bench/footprint.py [--idle 600] [--keep]

Brings up its own simulated cluster (fpXXXX: two home machines and one at the office, as
`vcapp dev up` makes, with vcapp installed on every machine and no app deployed), waits for
the placer and runtimes to go quiet, then samples every process of every machine (its
cgroup and network namespace: vcapp/dev/cluster.py host_pids) every SAMPLE_S for `--idle`
seconds. Printed per machine and process role: mean and peak RSS (VmRSS) and CPU as a
percentage of one core over the whole window (utime+stime+cutime+cstime from /proc/<pid>/stat:
with the short-lived commands a process ran and waited for, e.g. the daemon's `podman ps`), then per
machine the totals — all processes, and without SeaweedFS ("without storage", as issue 21
counts) — against the issue's budgets (Python <= 120 MB, everything <= 300 MB without
storage, <= 2 % of a core).

The baseline of the same run is the host itself: the CPU the bench's own sampling costs
(its process over the same window) is printed alongside, so a figure near it is noise.

Then, from each etcd member's own /metrics over the same window: the requests it answered per
second by gRPC method (through its JSON gateway: our Store's reads, lease renewals, member
lists), and how many revisions the cluster moved by (each a write: on an idle cluster, our own
bookkeeping; each makes every daemon's next tick read the cluster afresh,
vcapp/state/store.py shared_reads). These count what the CPU figures are made of, without the
host's noise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SAMPLE_S = 5.0
SETTLE_S = 60  # after install: the first placements, image copies and storage start go quiet
TICK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
PYTHON_BUDGET_MB = 120
TOTAL_BUDGET_MB = 300
CPU_BUDGET_PCT = 2.0
STORAGE_ROLES = ("weed master", "weed volume", "weed filer", "weed mount")


def role(pid: int) -> str | None:
    """What a process is, from its command line ('vcapp node run', 'caddy', 'weed filer')."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    argv = [a.decode(errors="replace") for a in argv if a]
    if not argv:
        return None  # a kernel thread or a zombie
    exe = os.path.basename(argv[0])
    if re.match(r"python3?(\.\d+)?$", exe) and len(argv) > 1:
        argv, exe = argv[1:], os.path.basename(argv[1])
        if exe == "-m" and len(argv) > 1:
            argv, exe = argv[1:], argv[1]
    if exe in ("vcapp", "weed", "podman") or exe.startswith("vcapp"):
        words = [a for a in argv[1:3] if not a.startswith("-")]
        return " ".join([exe, *words])
    return exe


def cgroup(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return ""


def sample(pid: int) -> tuple[int, int] | None:
    """(RSS in kB, CPU ticks used so far) of a live process. The ticks include its children
    that it waited for: the daemon's `podman ps` and `ip` runs live between two samples, and
    their CPU shows only there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(statm[1]) * PAGE_KB, sum(int(f) for f in fields[11:15])  # utime stime cutime cstime


def is_python(name: str) -> bool:
    return name.startswith("vcapp")


def measure(dc, machines: list[str], idle_s: float) -> dict:
    """{machine: {role: {"rss_mean", "rss_peak" (MB), "cpu_pct", "n" (processes seen)}}}.
    A role's RSS in a round is the sum over its processes then (0 when none ran): a process
    that lives between rounds (a `podman ps`) weighs what it holds on average."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    rounds: list[dict[tuple[str, str], int]] = []
    roles: dict[int, tuple[str, str]] = {}
    began = time.monotonic()
    me_before = sum(os.times()[:4])
    while True:
        this: dict[tuple[str, str], int] = defaultdict(int)
        for m in machines:
            for pid in dc.host_pids(m):
                if pid not in roles:
                    r = role(pid)
                    if r is None or "libpod" in cgroup(pid):
                        continue  # app containers are the apps' footprint, not ours
                    roles[pid] = (m, r)
                got = sample(pid)
                if got is None:
                    continue
                first.setdefault(pid, got[1])
                last[pid] = got[1]
                this[roles[pid]] += got[0]
        rounds.append(this)
        if time.monotonic() - began >= idle_s:
            break
        time.sleep(SAMPLE_S)
    window = time.monotonic() - began
    out: dict = defaultdict(dict)
    for key in {k for r in rounds for k in r}:
        m, r = key
        series = [rnd.get(key, 0) for rnd in rounds]
        pids = [p for p, k in roles.items() if k == key and p in last]
        ticks = sum(last[p] - first[p] for p in pids)
        out[m][r] = {"rss_mean": sum(series) / len(series) / 1024, "rss_peak": max(series) / 1024,
                     "cpu_pct": 100.0 * ticks / TICK / window, "n": len(pids)}
    out["_bench"] = {"cpu_pct": 100.0 * (sum(os.times()[:4]) - me_before) / window, "window": window,
                     "rounds": len(rounds)}
    return out


HANDLED = re.compile(r'^grpc_server_handled_total\{[^}]*grpc_method="(\w+)"[^}]*\} (\S+)$')
REVISION = re.compile(r'^etcd_debugging_mvcc_current_revision (\S+)$')


def etcd_counters(dc, machine: str) -> dict[str, float]:
    """{gRPC method: requests answered so far, "revision": the store's revision} of the etcd
    member on `machine` ({} without one), from its /metrics (client certificate required)."""
    from vcapp import etcdtls
    from vcapp.machine import ETCD_CLIENT_PORT

    data = dc.host_dir(machine) / "data"
    try:
        addr = json.loads((data / "node.json").read_text())["addr"]
    except (OSError, ValueError, KeyError):
        return {}
    tls = etcdtls.paths(data)
    proc = dc.run(machine, ["curl", "-s", "--max-time", "5", "--cacert", str(tls.ca), "--cert", str(tls.cert),
                            "--key", str(tls.key), f"https://{addr}:{ETCD_CLIENT_PORT}/metrics"],
                  capture_output=True, text=True, timeout=30)
    out: dict[str, float] = defaultdict(float)
    for line in proc.stdout.splitlines():
        if m := HANDLED.match(line):
            out[m.group(1)] += float(m.group(2))
        elif m := REVISION.match(line):
            out["revision"] = float(m.group(1))
    return dict(out)


def report_etcd(before: dict, after: dict, window: float) -> None:
    print(f"etcd over the same {window:.0f}s: requests answered per second by each member, by method; "
          "the cluster's revisions")
    methods = sorted({k for m in after.values() for k in m if k != "revision"})
    for m, now in after.items():
        rates = {k: (now.get(k, 0) - before.get(m, {}).get(k, 0)) / window for k in methods}
        shown = ", ".join(f"{k} {v:.2f}" for k, v in sorted(rates.items(), key=lambda kv: -kv[1]) if v > 0)
        print(f"  {m:<10} {sum(rates.values()):7.2f}/s  {shown}")
    moved = [now["revision"] - before[m]["revision"] for m, now in after.items()
             if "revision" in now and "revision" in before.get(m, {})]
    if moved:
        print(f"  revisions: {max(moved):.0f} in {window:.0f}s ({max(moved) / window:.2f}/s)")


def report(result: dict, machines: list[str]) -> None:
    bench = result["_bench"]
    print(f"\nidle window {bench['window']:.0f}s, {bench['rounds']} rounds of samples every {SAMPLE_S:g}s; "
          f"the sampling itself (baseline): {bench['cpu_pct']:.2f} % of a core\n")
    print(f"{'machine':<10} {'process':<28} {'n':>2} {'RSS mean MB':>12} {'peak MB':>8} {'CPU %core':>10}")  # CPU: with the children it waited for
    for m in machines:
        rows = sorted(result[m].items(), key=lambda kv: -kv[1]["rss_mean"])
        for r, v in rows:
            print(f"{m:<10} {r:<28} {v['n']:>2} {v['rss_mean']:>12.1f} {v['rss_peak']:>8.1f} {v['cpu_pct']:>10.2f}")
        py = sum(v["rss_mean"] for r, v in rows if is_python(r))
        no_storage = sum(v["rss_mean"] for r, v in rows if r not in STORAGE_ROLES)
        everything = sum(v["rss_mean"] for r, v in rows)
        cpu = sum(v["cpu_pct"] for r, v in rows if r not in STORAGE_ROLES)
        cpu_all = sum(v["cpu_pct"] for r, v in rows)
        print(f"{m:<10} {'= our Python processes':<28} {'':>2} {py:>12.1f} {'':>8} "
              f"{'':>10}   budget {PYTHON_BUDGET_MB} MB")
        print(f"{m:<10} {'= all, without storage':<28} {'':>2} {no_storage:>12.1f} {'':>8} {cpu:>10.2f}"
              f"   budget {TOTAL_BUDGET_MB} MB, {CPU_BUDGET_PCT:g} % of a core")
        print(f"{m:<10} {'= all, with storage':<28} {'':>2} {everything:>12.1f} {'':>8} {cpu_all:>10.2f}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle", type=float, default=600, help="seconds to sample (issue 21: 10 minutes)")
    ap.add_argument("--keep", action="store_true", help="leave the cluster up afterwards")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("footprint bench: run as root (it creates network namespaces)", file=sys.stderr)
        return 2
    from vcapp.dev import platform
    from vcapp.dev.cluster import DevCluster
    from vcapp.dev.topology import default

    name = "fp" + secrets.token_hex(2)
    dc = DevCluster(name)
    try:
        began = time.monotonic()
        dc.up(default(name, 2, 1, "easy"))
        platform.install(dc, say=lambda line: print(f"==> {line}", flush=True))
        print(f"cluster {name} up with vcapp in {time.monotonic() - began:.0f}s; settling {SETTLE_S}s", flush=True)
        time.sleep(SETTLE_S)
        machines = [m.name for m in dc.topology.machines()]
        etcd_before, t0 = {m: etcd_counters(dc, m) for m in machines}, time.monotonic()
        result = measure(dc, machines, args.idle)
        etcd_after = {m: c for m in machines if (c := etcd_counters(dc, m))}
        report(result, machines)
        report_etcd(etcd_before, etcd_after, time.monotonic() - t0)
    finally:
        if not args.keep:
            dc.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
