"""Issue 6 glue on a simulated cluster of 3 machines on one LAN with the real node daemons:
apps placed by the controller's placer loop, run by each machine's runtime loop in podman,
moved off a killed machine, scaled, rolled, logged, and given secrets."""

from __future__ import annotations

import json
import re
import sys
import time

import pytest

from builder.baseimage import TINY_IMAGE
from tests.control.conftest import three_machines

pytestmark = pytest.mark.cluster

MACHINES = ["home-1", "home-2", "home-3"]
SECRET = "s3cret-Xq81-value"
# A busybox web server: prints a line (for `vcapp logs`), serves PAGE and $TOKEN at /.
SERVE = ("mkdir -p /www && echo {page} > /www/index.html && echo token=$TOKEN > /www/t.txt && "
         "echo serving {page} && exec httpd -f -p 8080 -h /www")
PLACE_WAIT_S = 60   # placement + podman create + first health check, on a loaded 2-core host
FAILOVER_WAIT_S = 60  # lease TTL 5 s + placement + container start, with margin for slowness


@pytest.fixture(scope="module")
def cc(make_sim, tmp_path_factory):
    return three_machines(make_sim, tmp_path_factory, {"home-2": "disk=ssd", "home-3": "gpu=true"})


def create(cc, name: str, *extra: str, page: str | None = None, on: str = "home-1") -> None:
    cc.vcapp(on, "apps", "create", name, "--image", TINY_IMAGE, "--port", "8080",
             "--command", SERVE.format(page=page or name), "--health-path", "/index.html", *extra)


def ps(cc, app: str, on: str = "home-1") -> list[dict]:
    proc = cc.vcapp(on, "ps", app, "--json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else []


def healthy(cc, app: str, count: int = 1, on: str = "home-1") -> list[dict] | None:
    rows = [r for r in ps(cc, app, on) if r["state"] == "running" and r["health"] == "healthy"]
    return rows if len(rows) >= count else None


def get(cc, row: dict, path: str = "/index.html") -> str:
    """GET an instance on its own machine (containers publish on their machine's loopback only)."""
    proc = cc.sim.fetch(f"http://127.0.0.1:{row['host_port']}{path}", host=row["node"], timeout=3)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def events(cc, on: str = "home-1") -> list[dict]:
    return json.loads(cc.vcapp(on, "events", "--json", "--limit", "500").stdout)


def test_apps_land_where_the_plan_says_and_one_that_fits_nowhere_is_pending(cc):
    create(cc, "gpu", "--constraint", "gpu=true", "--memory", "128M")
    create(cc, "ssd", "--constraint", "disk=ssd", "--memory", "256M", "--cpus", "0.25")
    create(cc, "plain", "--memory", "64M")
    create(cc, "huge", "--memory", "900G")
    where = {}
    for app in ("gpu", "ssd", "plain"):
        where[app] = cc.wait(lambda: healthy(cc, app), PLACE_WAIT_S, f"{app} healthy")[0]
        assert get(cc, where[app]) == app
    assert where["gpu"]["node"] == "home-3" and where["ssd"]["node"] == "home-2"
    assert where["plain"]["node"] in MACHINES
    pending = cc.wait(lambda: [r for r in ps(cc, "huge") if "needs" in r["reason"]], 30, "huge pending")[0]
    assert pending["state"] == "pending" and pending["node"] is None
    assert "needs 921600 MB memory; largest free is" in pending["reason"]
    table = cc.vcapp("home-2", "ps", "huge").stdout
    assert "pending" in table and "needs 921600 MB memory" in table
    kinds = {(e["kind"], e.get("app")) for e in events(cc)}
    assert {("placed", "gpu"), ("placed", "ssd"), ("placed", "plain"), ("pending", "huge")} <= kinds
    listed = {a["name"]: a for a in json.loads(cc.vcapp("home-1", "apps", "--json").stdout)}
    assert listed["gpu"]["healthy"] == 1 and listed["huge"]["healthy"] == 0
    cc.vcapp("home-1", "apps", "destroy", "huge", "--yes")
    cc.vcapp("home-1", "apps", "destroy", "gpu", "--yes")
    cc.vcapp("home-1", "apps", "destroy", "ssd", "--yes")
    cc.wait(lambda: "vc-gpu" not in cc.sim.run("home-3", "podman", "ps", "-a", "--format", "{{.Names}}").stdout,
            60, "gpu's container removed from home-3")


def test_logs_are_shown_from_whichever_machine_runs_the_app(cc):
    row = cc.wait(lambda: healthy(cc, "plain"), PLACE_WAIT_S, "plain healthy")[0]
    other = next(m for m in MACHINES if m != row["node"])
    out = cc.vcapp(other, "logs", "plain").stdout  # forwarded to the machine that runs it
    assert "serving plain" in out
    # Following: the stream stays open (timeout ends it) and has shown the output so far.
    proc = cc.sim.run(other, "sh", "-c", "PYTHONUNBUFFERED=1 timeout 5 vcapp logs plain -f", check=False)
    assert proc.returncode == 124 and "serving plain" in proc.stdout, proc.stderr
    # --since leaves out what is older: the line printed at start, seconds ago.
    time.sleep(2)
    assert "serving plain" not in cc.vcapp(other, "logs", "plain", "--since", "1s", "--source", "app").stdout
    assert "serving plain" in cc.vcapp(other, "logs", "plain", "--since", "1h", "--source", "app").stdout
    refused = cc.vcapp(other, "logs", "plain", "--since", "yesterday", check=False)
    assert refused.returncode != 0 and "give a duration like 30s, 15m, 1h or 2d" in refused.stderr


def test_following_the_logs_follows_every_instance_on_every_machine(cc):
    cc.vcapp("home-1", "scale", "plain", "--count", "2")
    rows = cc.wait(lambda: healthy(cc, "plain", 2), PLACE_WAIT_S, "two plain instances")
    assert len({r["node"] for r in rows}) == 2  # spread: one stream is forwarded from elsewhere
    # Following shows both instances' output and, as a request arrives at a router, its access line.
    probe = (f"curl -s -o /dev/null -H 'Host: plain.apps.test' "
             f"'http://{cc.sim.addr('home-2')}:7080/index.html?probe=1'")
    proc = cc.sim.run("home-1", "sh", "-c", "PYTHONUNBUFFERED=1 timeout 10 vcapp logs plain -f & pid=$!; "
                      f"sleep 4; {probe}; wait $pid", check=False)
    assert proc.returncode == 124, proc.stderr
    lines = proc.stdout.splitlines()
    assert {"0| serving plain", "1| serving plain"} <= set(lines), proc.stdout
    access = r'router@home-\d\| method=GET path="/index.html\?probe=1" status=200 service=\d+ms .* instance=[01]'
    assert any(re.fullmatch(access, line) for line in lines), proc.stdout
    # The same line afterwards, from the routers only.
    routers = cc.vcapp("home-3", "logs", "plain", "--source", "router").stdout.splitlines()
    assert any(re.fullmatch(access, line) for line in routers) and not any("serving" in x for x in routers), routers
    cc.vcapp("home-1", "scale", "plain", "--count", "1")
    cc.wait(lambda: len(ps(cc, "plain")) == 1, PLACE_WAIT_S, "plain back to one instance")
    # The instance scaled away is gone, its output is not: kept on the machine that ran it.
    ended = r"1 \(r\S+, ended \S+ \S+Z on home-\d\)\| serving plain"

    def with_ended() -> list[str] | None:
        out = cc.vcapp("home-3", "logs", "plain", "--source", "app").stdout.splitlines()
        return out if any(re.fullmatch(ended, line) for line in out) else None

    lines = cc.wait(with_ended, 30, "the ended instance's lines")
    assert "0| serving plain" in lines, lines


def test_secrets_reach_the_container_and_nowhere_else(cc):
    before = healthy(cc, "plain")[0]
    cc.vcapp("home-2", "secrets", "set", "plain", f"TOKEN={SECRET}")
    row = cc.wait(lambda: [r for r in healthy(cc, "plain") or [] if r["release"] != before["release"]],
                  PLACE_WAIT_S, "plain rolled onto its secret")[0]
    assert get(cc, row, "/t.txt") == f"token={SECRET}"
    env = cc.sim.run(row["node"], "podman", "exec", row["container"], "env").stdout
    assert f"TOKEN={SECRET}" in env
    assert cc.vcapp("home-1", "secrets", "list", "plain").stdout.split() == ["TOKEN"]
    seen = [cc.vcapp("home-1", "apps", "--json").stdout, cc.vcapp("home-1", "ps", "plain", "--json").stdout,
            cc.vcapp("home-1", "events", "--json", "--limit", "500").stdout,
            cc.etcd("home-1", "get", "--prefix", "/vc/").stdout]
    for m in MACHINES:
        seen += [p.read_text(errors="replace") for p in (cc.sim.dc.host_dir(m) / "data" / "log").glob("*.log")]
    assert all(SECRET not in text for text in seen)
    assert "TOKEN" in seen[0]  # the name is listed, the value is not


def test_scale_to_two_spreads_across_machines(cc):
    before = healthy(cc, "plain")[0]["release"]
    cc.vcapp("home-1", "scale", "plain", "--count", "2", "--memory", "96M", "--cpus", "0.3")

    def spread() -> list[dict] | None:
        rows = [r for r in healthy(cc, "plain", 2) or [] if r["release"] != before]
        return rows if len({r["node"] for r in rows}) == 2 else None

    rows = cc.wait(spread, PLACE_WAIT_S, "two healthy instances of plain's new limits on two machines")
    assert all(get(cc, r) == "plain" for r in rows)
    info = json.loads(cc.sim.run(rows[0]["node"], "podman", "inspect", rows[0]["container"]).stdout)[0]
    assert info["HostConfig"]["Memory"] == 96 * 2**20
    cc.vcapp("home-1", "scale", "plain", "--count", "1")
    cc.wait(lambda: len(ps(cc, "plain")) == 1, 30, "plain back to one instance")


def test_release_failing_its_health_check_is_not_promoted(cc):
    row = cc.wait(lambda: healthy(cc, "plain"), PLACE_WAIT_S, "plain healthy")[0]
    # What the git-push pipeline does on a deploy: a release that serves no /index.html.
    script = ("from vcapp.state.apps import set_release; from vcapp.machine import NodeConfig; "
              "from vcapp.state.store import Store; "
              "s = Store(NodeConfig.load().store_endpoints()); "
              "set_release(s, 'plain', 2, 'localhost/vcapp/tiny:latest', {'command': ['sh', '-c', "
              "'echo broken && exec httpd -f -p 8080 -h /nowhere'], 'health': {'type': 'http', "
              "'path': '/index.html', 'start_grace_s': 6}})")
    cc.sim.run("home-1", sys.executable, "-c", script)
    refused = re.compile(r"release 2(\.\d+)? failed its health check: ")  # runtime release <n>.<revision>
    failed = cc.wait(lambda: [r for r in ps(cc, "plain") if refused.search(r["reason"] or "")],
                     90, "release 2 refused")[0]
    assert failed["release"] == row["release"] and failed["health"] == "healthy"
    # The old release keeps serving (asked a few times: one GET on a loaded 2-core host can time out).
    assert cc.wait(lambda: get(cc, failed) == "plain", 15, "the old release answering")
    assert any(e["kind"] == "release.failed" and e.get("app") == "plain" for e in events(cc))


def test_killed_machine_its_app_answers_again_elsewhere(cc, record_property):
    create(cc, "web", "--memory", "64M")
    row = cc.wait(lambda: healthy(cc, "web"), PLACE_WAIT_S, "web healthy")[0]
    victim = row["node"]
    watcher = next(m for m in MACHINES if m != victim)
    killed = time.monotonic()
    cc.sim.dc.kill(victim)
    moved = cc.wait(lambda: [r for r in healthy(cc, "web", on=watcher) or [] if r["node"] != victim
                             and get(cc, r) == "web"], FAILOVER_WAIT_S, "web answering on another machine",
                    interval=0.2)[0]
    seconds = round(time.monotonic() - killed, 2)
    record_property("failover_kill_to_answer_s", seconds)
    print(f"\nfailover: {victim} killed -> web answering on {moved['node']} after {seconds}s")
    kinds = [e for e in events(cc, on=watcher) if e.get("app") == "web"]
    assert any(e["kind"] == "failover" and e.get("previous_node") == victim for e in kinds)
    assert any(e["kind"] == "failover.healthy" and e.get("seconds") is not None for e in kinds)
