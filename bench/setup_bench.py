"""Seconds to bring vcapp up on a fresh simulated cluster, phase by phase, for one or more
source trees side by side in one run (the first tree is the baseline).

Each round makes a 3-machine cluster (`vcapp dev` topology, home site) and runs
vcapp/dev/platform.install on it, as `vcapp dev up` and most cluster tests do: `cluster init`
on the first machine, the edge, a `node join` on each other machine, the logins, the edge's
HTTPS entry. Every command of the install is timed; the table gives each phase's median over
the rounds and the total's ratio to the baseline's. The trees alternate round by round, so a
host that gets busier midway weighs on both.

A tree is a checkout of this repository (e.g. `git worktree add /work/wt-base REV`): the
install, its CLI and the machines' daemons run that tree's code (PYTHONPATH).

Run as root: .venv/bin/python bench/setup_bench.py [--rounds 3] TREE [TREE...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUND_TIMEOUT = 600.0  # s: an install takes tens of seconds; minutes mean something is broken

# Runs inside the tree under test: one cluster made, installed, timed and taken down.
ONE_ROUND = r"""
import json, sys, time
from vcapp.dev import platform
from vcapp.dev.cluster import DevCluster
from vcapp.dev.topology import default

phases = []
command = platform._vcapp
def timed(dc, host, *args, **kw):
    began = time.monotonic()
    try:
        return command(dc, host, *args, **kw)
    finally:
        phases.append([host, " ".join(a for a in args[:2] if not a.startswith("vcjoin_")), time.monotonic() - began])
platform._vcapp = timed
dc = DevCluster(sys.argv[1])
try:
    began = time.monotonic()
    dc.up(default(dc.name, 3, 0, "easy"))
    up = time.monotonic() - began
    platform.install(dc, say=lambda line: None)
    total = time.monotonic() - began
finally:
    dc.down()
print(json.dumps({"up": up, "total": total, "phases": phases}))
"""


def one_round(tree: Path, name: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, "-c", ONE_ROUND, name], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=ROUND_TIMEOUT)
    if proc.returncode != 0:
        raise SystemExit(f"install with {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def phase_names(result: dict) -> list[str]:
    """`host command` of each phase, a join numbered by its host (the order of the install)."""
    return [f"{host} {command}" for host, command, _ in result["phases"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="+", type=Path, help="source trees; the first is the baseline")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    results: dict[Path, list[dict]] = {t: [] for t in args.trees}
    for r in range(args.rounds):
        for i, tree in enumerate(args.trees):
            result = one_round(tree.resolve(), f"sb{r}{i}")
            results[tree].append(result)
            print(f"round {r + 1}, {tree}: {result['total']:.1f} s", flush=True)
    names = phase_names(results[args.trees[0]][0])
    width = max(len(n) for n in names + ["total"]) + 2
    print(f"\nmedian seconds over {args.rounds} rounds (3 machines, idle host unless said)")
    print(f"{'phase':<{width}}" + "".join(f"{str(t):>22}" for t in args.trees))
    for k, name in enumerate(names):
        cells = [statistics.median(res["phases"][k][2] for res in results[t]) for t in args.trees]
        print(f"{name:<{width}}" + "".join(f"{c:>22.1f}" for c in cells))
    totals = [statistics.median(res["total"] for res in results[t]) for t in args.trees]
    print(f"{'total':<{width}}" + "".join(f"{c:>22.1f}" for c in totals))
    print(f"{'ratio to baseline':<{width}}" + "".join(f"{c / totals[0]:>21.2f}x" for c in totals))


if __name__ == "__main__":
    main()
