"""runtime.supervisor's loop driven by files instead of etcd, for tests on simulated machines:
assignments from a JSON file ({"assignments": [...], "secrets": {...}}, runtime.supervisor.specs_from),
status reports to another, every --interval seconds.

    python -m tests.helpers.file_agent --desired D.json --status S.json [--node N] [--once]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

from runtime.supervisor import LOOP_INTERVAL_S, Agent, specs_from
from runtime.podman import PodmanDriver, PodmanError


def write_json(path: Path, doc: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
    os.replace(tmp, path)


def rss_mb() -> float:
    """This process's resident memory now (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.helpers.file_agent", description="Run this machine's "
                                 "instances from a JSON file of assignments, writing status reports to another.")
    ap.add_argument("--desired", type=Path, required=True)
    ap.add_argument("--status", type=Path, required=True)
    ap.add_argument("--node", default=os.environ.get("VCAPP_HOST") or os.uname().nodename)
    ap.add_argument("--interval", type=float, default=LOOP_INTERVAL_S)
    ap.add_argument("--once", action="store_true")
    args = ap.parse_args(argv)
    data_dir = os.environ.get("VCAPP_DATA_DIR")
    ready = threading.Event()  # a new instance passed its first check: step now
    agent = Agent(PodmanDriver.from_env(), args.node, Path(data_dir) / "runtime" / "book.json" if data_dir else None,
                  on_ready=ready.set)
    while True:
        started = time.monotonic()
        ready.clear()
        doc = json.loads(args.desired.read_text()) if args.desired.exists() else {}
        specs, errors = specs_from(doc, args.node)
        try:
            reports, problem = agent.step(specs, errors), ""
        except PodmanError as e:
            reports, problem = {}, str(e)
        write_json(args.status, {"node": args.node, "instances": reports, "error": problem,
                                 "step_s": round(time.monotonic() - started, 3), "rss_mb": rss_mb()})
        if args.once:
            return
        ready.wait(max(0.0, args.interval - (time.monotonic() - started)))


if __name__ == "__main__":
    main()
