"""Failover benchmark: seconds from losing the machine that runs an app to the app answering
HTTP from another machine, for a powered-off machine and for a black-holed one.

    .venv/bin/python bench/failover_bench.py [--runs 5] [--volume]

Brings up its own simulated cluster (fobXXXX: 3 machines on one LAN, the real node daemons,
as tests/apps does), creates an app with one instance of the tiny busybox web server, then
`--runs` times each:
  kill       the machine running it is powered off (`dc.kill`), then booted again;
  blackhole  every packet in and out of that machine is dropped (iptables INPUT and OUTPUT
             DROP inside its namespace; processes keep running), then the rules are lifted.
A neighbour polls every POLL_S: the app's status in etcd (etcdctl against the surviving
members) and a GET of its page on the machine the status names. Printed per mode: median and
max of "lost -> answering elsewhere" and of "lost -> cluster marks the machine down" (the
controller's node.down event), and the failover.healthy event's own figure (the move itself:
reassignment -> healthy). Issue 16: answering elsewhere <= 5 s median, <= 8 s worst; with
`--volume` (the app's data on a volume: it moves only once the lost machine's lease ended and
the machine, if only cut off, has fenced itself) <= 8 s median.

    .venv/bin/python bench/failover_bench.py --false-alarms 60

instead checks that nothing moves when nothing died (issue 16): for that many seconds the
machine running the app burns both cores (busy loops in its namespace) while another
machine's link flaps (every packet dropped for 1 s, then 1 s clear, and again); printed: the
placements and failovers recorded meanwhile (0 expected) and where the app runs after.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MACHINES = ["home-1", "home-2", "home-3"]
APP = "bench"
PAGE = "bench-page"
SERVE = (f"mkdir -p /www && echo {PAGE} > /www/index.html && exec httpd -f -p 8080 -h /www")
POLL_S = 0.2          # the neighbour's polling period (the brief's resolution)
MOVE_TIMEOUT_S = 90   # give up on one run after this: it is then reported as a failure
SETTLE_TIMEOUT_S = 120  # a booted/unblocked machine rejoins: etcd member catch-up, lease, mesh-free LAN
SETTLE_EXTRA_S = 5    # after all machines are up again, let the placer and runtimes go quiet
DROP_RULES = (("INPUT", "-j", "DROP"), ("OUTPUT", "-j", "DROP"))


def bring_up(volume: bool = False):
    """A fresh cluster with the tiny image on every machine and the app healthy somewhere;
    with `volume`, the app keeps its data on a volume of the cluster's storage."""
    from builder.baseimage import TINY_IMAGE
    from vcapp.dev.cluster import DevCluster
    from vcapp.dev.rigs.control import start_machines
    from vcapp.dev.rigs.sim import Sim
    from vcapp.dev.topology import default

    dc = DevCluster("fob" + secrets.token_hex(2))
    dc.up(default(dc.name, 3, 0))
    sim = Sim(dc)
    cc = start_machines(sim, Path(tempfile.mkdtemp(prefix="fob-tiny-")), up_timeout=90)
    cc.vcapp("home-1", "apps", "create", APP, "--image", TINY_IMAGE, "--port", "8080", "--command", SERVE,
             "--health-path", "/index.html", "--memory", "64M", *(("--volume", "data:/data") if volume else ()))
    if volume:
        sim.run("home-1", "vcapp", "volumes", "create", APP, "data", "--size", "64M", timeout=300)
    return dc, sim, cc


def status_rows(cc, via: str, alive: list[str]) -> list[dict]:
    """The app's reports in etcd, read on `via` from the members still reachable."""
    proc = cc.sim.etcdctl(via, [cc.sim.addr(m) for m in alive], "--command-timeout=2s", "get", "--prefix",
                          "/vc/status/", "--print-value-only", check=False, timeout=10)
    rows = []
    for line in proc.stdout.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("app") == APP:
            rows.append(rec)
    return rows


def answers(cc, row: dict) -> bool:
    """Whether the instance answers on its machine (containers publish on its loopback only)."""
    if row.get("health") != "healthy" or not row.get("host_port"):
        return False
    proc = cc.sim.fetch(f"http://127.0.0.1:{row['host_port']}/index.html", host=row["node"], timeout=1)
    return proc.returncode == 0 and proc.stdout.strip() == PAGE


def serving_node(cc, via: str, alive: list[str]) -> str | None:
    for row in status_rows(cc, via, alive):
        if row.get("node") in alive and answers(cc, row):
            return row["node"]
    return None


def lose(cc, mode: str, victim: str) -> None:
    if mode == "kill":
        cc.sim.dc.kill(victim)
    else:
        for rule in DROP_RULES:
            cc.sim.run(victim, "iptables", "-A", *rule)


def restore(cc, mode: str, victim: str) -> None:
    if mode == "kill":
        cc.sim.dc.revive(victim)
    else:
        for rule in DROP_RULES:
            cc.sim.run(victim, "iptables", "-D", *rule)


def event_after(cc, via: str, kind: str, t0: float, **match) -> dict | None:
    proc = cc.vcapp(via, "events", "--json", "--limit", "200", check=False)
    try:
        evs = json.loads(proc.stdout)
    except ValueError:
        return None
    return next((e for e in evs if e["kind"] == kind and e["time"] >= t0
                 and all(e.get(k) == v for k, v in match.items())), None)


def one_run(cc, mode: str) -> dict:
    victim = cc.wait(lambda: serving_node(cc, "home-1", MACHINES), SETTLE_TIMEOUT_S, f"{APP} answering")
    watcher = next(m for m in MACHINES if m != victim)
    alive = [m for m in MACHINES if m != victim]
    t0 = time.time()
    lose(cc, mode, victim)
    moved_s, where = None, None
    try:
        while time.time() - t0 < MOVE_TIMEOUT_S:
            began = time.time()
            node = serving_node(cc, watcher, alive)
            if node and node != victim:
                moved_s, where = round(time.time() - t0, 2), node
                break
            time.sleep(max(0.0, POLL_S - (time.time() - began)))
        down = event_after(cc, watcher, "node.down", t0, node=victim)
        healthy = event_after(cc, watcher, "failover.healthy", t0, app=APP, previous_node=victim)
        if moved_s is None:  # what a person would look at next, printed with the run
            print(cc.vcapp(watcher, "ps", APP, check=False).stdout, cc.vcapp(watcher, "events", "--limit", "25",
                                                                          check=False).stdout, flush=True)
    finally:
        restore(cc, mode, victim)
    cc.wait(lambda: (n := cc.all_up(watcher)) and len(n) == 3, SETTLE_TIMEOUT_S, f"{victim} back up")
    time.sleep(SETTLE_EXTRA_S)
    return {"mode": mode, "victim": victim, "to": where, "answer_s": moved_s,
            "down_s": round(down["time"] - t0, 2) if down else None,
            "move_s": healthy.get("seconds") if healthy else None}


def summary(values: list) -> tuple[str, str]:
    got = [v for v in values if v is not None]
    if not got:
        return "-", "-"
    med, worst = statistics.median(got), max(got)
    missing = len(values) - len(got)
    return f"{med:.2f}", f"{worst:.2f}" + (f" ({missing} failed)" if missing else "")


def table(runs: list[dict]) -> str:
    out = ["", "Per run:", f"{'mode':<10}{'victim':<8}{'->':<8}{'answer s':>9}{'down s':>8}{'move s':>8}"]
    for r in runs:
        out.append(f"{r['mode']:<10}{r['victim']:<8}{r['to'] or '-':<8}{r['answer_s'] or '-':>9}"
                   f"{r['down_s'] or '-':>8}{r['move_s'] or '-':>8}")
    out += ["", f"{'mode':<10}{'runs':>5}  {'answer med':>10}  {'answer max':<16}{'down med':>9}  {'down max':<16}"
                f"{'move med':>9}  {'move max':<16}"]
    for mode in ("kill", "blackhole"):
        rs = [r for r in runs if r["mode"] == mode]
        a, d, m = (summary([r[k] for r in rs]) for k in ("answer_s", "down_s", "move_s"))
        out.append(f"{mode:<10}{len(rs):>5}  {a[0]:>10}  {a[1]:<16}{d[0]:>9}  {d[1]:<16}{m[0]:>9}  {m[1]:<16}")
    out += ["", "answer: machine lost -> app answers HTTP from another machine (polled every "
                f"{POLL_S}s by a neighbour)", "down: machine lost -> node.down event (lease expired)",
            "move: failover.healthy event (reassigned -> healthy elsewhere)",
            "targets (issue 16): answer <= 5 s median, <= 8 s worst; with a volume <= 8 s median"]
    return "\n".join(out)


FLAP_S = 1.0  # the flapping link: dropped this long, then clear this long


def false_alarms(cc, seconds: float) -> None:
    """Load the app's machine, flap another's link; report any move (see the module docstring)."""
    busy = cc.wait(lambda: serving_node(cc, "home-1", MACHINES), SETTLE_TIMEOUT_S, f"{APP} answering")
    flapping = next(m for m in MACHINES if m != busy)
    t0 = time.time()
    burners = [cc.sim.spawn(busy, "timeout", str(int(seconds)), "sh", "-c", "while :; do :; done") for _ in range(2)]
    dropped = False
    try:
        while time.time() - t0 < seconds:
            for rule in DROP_RULES:
                cc.sim.run(flapping, "iptables", "-D" if dropped else "-A", *rule)
            dropped = not dropped
            time.sleep(FLAP_S)
    finally:
        if dropped:
            for rule in DROP_RULES:
                cc.sim.run(flapping, "iptables", "-D", *rule)
        for b in burners:
            b.kill()
    time.sleep(SETTLE_EXTRA_S)
    watcher = next(m for m in MACHINES if m not in (busy, flapping))
    proc = cc.vcapp(watcher, "events", "--json", "--limit", "200", check=False)
    evs = [e for e in json.loads(proc.stdout or "[]") if e["time"] >= t0]
    moves = [e for e in evs if e["kind"] in ("placed", "failover")]
    after = serving_node(cc, watcher, MACHINES)
    print(f"\nfalse alarms: {seconds:.0f} s of {busy} at 100 % CPU and {flapping}'s link flapping "
          f"({FLAP_S:g} s down, {FLAP_S:g} s up)")
    print(f"  placements and failovers meanwhile: {len(moves)} (0 expected) {[e['message'] for e in moves]}")
    print(f"  node.down events: {sum(e['kind'] == 'node.down' for e in evs)}; "
          f"{APP} runs on {after} ({'unmoved' if after == busy else 'MOVED'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per mode (>= 5 for the issue's figures)")
    ap.add_argument("--modes", default="kill,blackhole", help="which losses, comma-separated")
    ap.add_argument("--keep", action="store_true", help="leave the cluster up (its logs, to look at)")
    ap.add_argument("--volume", action="store_true",
                    help="the app keeps its data on a volume: it moves only once the lease ends (fencing)")
    ap.add_argument("--false-alarms", type=float, default=0.0, metavar="SECONDS",
                    help="instead: load one machine and flap another's link this long; nothing may move")
    args = ap.parse_args()
    dc, sim, cc = bring_up(args.volume)
    runs = []
    if args.false_alarms:
        try:
            false_alarms(cc, args.false_alarms)
        finally:
            dc.down()
        return
    try:
        for mode in args.modes.split(","):
            for i in range(args.runs):
                r = one_run(cc, mode)
                print(f"{mode} {i + 1}/{args.runs}: {r}", flush=True)
                runs.append(r)
    finally:
        print(table(runs), flush=True)
        if args.keep:
            print(f"cluster {dc.name} left up (--keep)")
        else:
            dc.down()


if __name__ == "__main__":
    main()
