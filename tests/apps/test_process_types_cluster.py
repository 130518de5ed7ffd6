"""Process types on a simulated cluster of 3 machines with the real node daemons: an app with
a web process and a worker (busybox, created with --image and --process) runs both; the worker
has no port and no HTTP check, does its work (a heartbeat line every second in its log), is
scaled on its own and moves when its machine dies."""

from __future__ import annotations

import json
import time

import pytest

from builder.baseimage import TINY_IMAGE
from tests.control.conftest import three_machines

pytestmark = pytest.mark.cluster

MACHINES = ["home-1", "home-2", "home-3"]
SERVE = "mkdir -p /www && echo shop > /www/index.html && exec httpd -f -p 8080 -h /www"
WORK = "i=0; while true; do i=$((i+1)); echo beat $i; sleep 1; done"
PLACE_WAIT_S = 60
FAILOVER_WAIT_S = 60


@pytest.fixture(scope="module")
def cc(make_sim, tmp_path_factory):
    return three_machines(make_sim, tmp_path_factory)


def ps(cc, on: str = "home-1") -> list[dict]:
    proc = cc.vcapp(on, "ps", "shop", "--json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else []


def running(cc, process: str, count: int = 1, on: str = "home-1", avoid: str | None = None) -> list[dict] | None:
    rows = [r for r in ps(cc, on) if r["process"] == process and r["state"] == "running" and r["node"] != avoid
            and (process != "web" or r["health"] == "healthy")]
    return rows if len(rows) >= count else None


def beat(cc, row: dict) -> int | None:
    """The worker's last heartbeat line, from its container's log on its machine; None if none."""
    proc = cc.sim.run(row["node"], "podman", "logs", "--tail", "1", row["container"], check=False)
    last = proc.stdout.strip().split()
    return int(last[1]) if proc.returncode == 0 and len(last) == 2 and last[1].isdigit() else None


def beating(cc, row: dict) -> bool:
    first = beat(cc, row)
    time.sleep(2.5)
    second = beat(cc, row)
    return first is not None and second is not None and second > first


def test_web_and_worker_both_run_and_the_worker_gets_no_port(cc):
    cc.vcapp("home-1", "apps", "create", "shop", "--image", TINY_IMAGE, "--port", "8080", "--command", SERVE,
             "--health-path", "/index.html", "--memory", "64M", "--process", f"worker={WORK}")
    web = cc.wait(lambda: running(cc, "web"), PLACE_WAIT_S, "web healthy")[0]
    worker = cc.wait(lambda: running(cc, "worker"), PLACE_WAIT_S, "worker running")[0]
    assert worker["instance"] == "worker-0" and worker["host_port"] is None
    assert web["node"] != worker["node"]  # spread like two instances of one app
    assert cc.wait(lambda: beating(cc, worker), 30, "the worker's heartbeat advancing")
    answer = cc.sim.fetch(f"http://127.0.0.1:{web['host_port']}/index.html", host=web["node"], timeout=3)
    assert answer.stdout.strip() == "shop"
    table = cc.vcapp("home-2", "ps", "shop").stdout
    assert "TYPE" in table and any(line.split()[:2] == ["worker-0", "worker"] for line in table.splitlines())


def test_workers_scale_on_their_own(cc):
    cc.vcapp("home-1", "scale", "shop", "worker=2")
    rows = cc.wait(lambda: running(cc, "worker", 2), PLACE_WAIT_S, "two workers running")
    assert {r["instance"] for r in rows} == {"worker-0", "worker-1"}
    assert len([r for r in ps(cc) if r["process"] == "web"]) == 1
    refused = cc.vcapp("home-1", "scale", "shop", "worker=5000", check=False)
    assert refused.returncode != 0 and "worker: count: must be between 0 (stopped) and 100" in refused.stderr
    refused = cc.vcapp("home-1", "scale", "shop", "clock=1", check=False)
    assert refused.returncode != 0 and "app shop has no process type 'clock'" in refused.stderr
    cc.vcapp("home-1", "scale", "shop", "worker=1")
    cc.wait(lambda: [r["instance"] for r in ps(cc) if r["process"] == "worker"] == ["worker-0"], 30,
            "back to one worker")


def test_the_worker_moves_when_its_machine_dies(cc, record_property):
    worker = cc.wait(lambda: running(cc, "worker"), PLACE_WAIT_S, "worker running")[0]
    victim = worker["node"]
    watcher = next(m for m in MACHINES if m != victim)
    killed = time.monotonic()
    cc.sim.dc.kill(victim)
    moved = cc.wait(lambda: running(cc, "worker", on=watcher, avoid=victim), FAILOVER_WAIT_S,
                    "worker running on another machine", interval=0.5)[0]
    assert cc.wait(lambda: beating(cc, moved), 30, "the moved worker's heartbeat advancing")
    seconds = round(time.monotonic() - killed, 2)
    record_property("worker_failover_s", seconds)
    print(f"\nworker failover: {victim} killed -> worker beating on {moved['node']} after {seconds}s")
    assert cc.wait(lambda: running(cc, "web", on=watcher, avoid=victim), FAILOVER_WAIT_S, "web still serving")
