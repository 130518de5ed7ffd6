"""Issue 6's failure checks on 3 machines on one LAN with the real node daemons:
a memory hog is killed by its own limit while its neighbour on the same machine keeps
serving, a partitioned machine stops its volume-owning instance before that instance
may start anywhere else (no two writers), and when a dead machine leaves too little room
for all its apps the one with the higher priority moves and the other waits, with its
reason, until the machine returns."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime

import pytest

from builder.baseimage import TINY_IMAGE
from tests.control.conftest import three_machines

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

MACHINES = ["home-1", "home-2", "home-3"]
SERVE = ("mkdir -p /www && echo {page} > /www/index.html && echo serving {page} && "
         "exec httpd -f -p 8080 -h /www")
# Serves /index.html (so it passes its health check), then doubles a shell string until the
# 32 MB limit's OOM killer ends the shell, which is the container's PID 1.
HOG = ("mkdir -p /www && echo hog > /www/index.html && httpd -p 8080 -h /www && sleep 3 && "
       "x=a; while true; do x=$x$x; done")
HOG_MEMORY = "32M"
PLACE_WAIT_S = 60   # placement + podman create + first health check, on a loaded 2-core host
OOM_RESTARTS = 2    # two OOM kills and restarts show a loop, not a one-off
OOM_WAIT_S = 60     # each cycle: start, 3 s of serving, seconds of doubling, 1-2 s back-off
FAILOVER_WAIT_S = 60  # lease TTL 5 s + placement + container start, with margin for slowness
HEAL_WAIT_S = 60    # the cut machine renews its lease again once its cable is back
VOLUMES = [{"source": "data", "destination": "/data", "size_mb": 64}]
# The ledger appends a line to its volume at every start, then serves, and keeps appending
# "<its host name> <n>" to /data/log ten times a second (each close() flushes it to the filer).
LEDGER = ("mkdir -p /www && echo ledger > /www/index.html && echo \"started $(date +%s)\" >> /data/starts && "
          "(h=$(hostname); n=0; while :; do n=$((n+1)); echo \"$h $n\" >> /data/log; sleep 0.1; done) & "
          "exec httpd -f -p 8080 -h /www")
# A weed mount retries a metadata flush for up to 30 s: a cut-off machine's pending flush, if
# it survived the fence, lands this long after the cut at the latest.
STALE_FLUSH_S = 40
STORAGE_START_S = 90  # the first volume starts SeaweedFS on every machine


@pytest.fixture(scope="module")
def cc(make_sim, tmp_path_factory):
    return three_machines(make_sim, tmp_path_factory, {"home-2": "pool=shared", "home-3": "pool=other"})


def create(cc, name: str, command: str, *extra: str) -> None:
    cc.vcapp("home-1", "apps", "create", name, "--image", TINY_IMAGE, "--port", "8080", "--command", command,
             "--health-path", "/index.html", *extra)


def ps(cc, app: str, on: str = "home-1") -> list[dict]:
    proc = cc.vcapp(on, "ps", app, "--json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else []


def healthy(cc, app: str, on: str = "home-1") -> list[dict]:
    return [r for r in ps(cc, app, on) if r["state"] == "running" and r["health"] == "healthy"]


def get(cc, row: dict) -> str:
    """GET an instance on its own machine (containers publish on their machine's loopback only)."""
    proc = cc.sim.fetch(f"http://127.0.0.1:{row['host_port']}/index.html", host=row["node"], timeout=3)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def events(cc, on: str = "home-1") -> list[dict]:
    return json.loads(cc.vcapp(on, "events", "--json", "--limit", "500").stdout)


def test_memory_hog_is_killed_by_its_limit_and_its_neighbour_keeps_serving(cc):
    create(cc, "calm", SERVE.format(page="calm"), "--memory", "64M", "--constraint", "pool=shared")
    create(cc, "hog", HOG, "--memory", HOG_MEMORY, "--constraint", "pool=shared")
    calm = cc.wait(lambda: healthy(cc, "calm"), PLACE_WAIT_S, "calm healthy")[0]
    cc.wait(lambda: healthy(cc, "hog"), PLACE_WAIT_S, "hog healthy")
    assert calm["node"] == "home-2" and ps(cc, "hog")[0]["node"] == "home-2"
    answers = []

    def hog_restarted_twice():
        answers.append(get(cc, calm))  # the neighbour of the hog is asked on every look
        return [r for r in ps(cc, "hog") if (r.get("restarts") or 0) >= OOM_RESTARTS]

    hog = cc.wait(hog_restarted_twice, OOM_WAIT_S, f"hog restarted {OOM_RESTARTS} times", interval=1)[0]
    assert hog["node"] == "home-2"
    assert answers and all(a == "calm" for a in answers), answers
    crashes = [e for e in events(cc) if e["kind"] == "crash" and e.get("app") == "hog"]
    assert len(crashes) >= OOM_RESTARTS and all("exited with code 137" in e["message"] for e in crashes), crashes
    info = json.loads(cc.sim.run("home-2", "podman", "inspect", hog["container"]).stdout)[0]
    assert info["HostConfig"]["Memory"] == 32 * 2**20
    after = ps(cc, "calm")[0]
    assert after["restarts"] == 0 and after["container"] == calm["container"] and after["health"] == "healthy"
    assert not [e for e in events(cc) if e["kind"] == "crash" and e.get("app") == "calm"]
    for app in ("hog", "calm"):
        cc.vcapp("home-1", "apps", "destroy", app, "--yes")


def _assignment(cc, app: str) -> dict:
    out = cc.etcd("home-1", "get", f"/vc/assign/{app}/0", "--print-value-only", check=False).stdout.strip()
    return json.loads(out) if out else {}


def _status(cc, node: str, app: str) -> dict:
    out = cc.etcd("home-1", "get", f"/vc/status/{node}/{app}/0", "--print-value-only", check=False).stdout.strip()
    return json.loads(out) if out else {}


def _died_at(cc, host: str, container: str) -> float | None:
    """When podman on `host` saw `container` die (unix seconds), from its own event log."""
    out = cc.sim.run(host, "podman", "events", "--stream=false", "--since", "10m", "--filter",
                     f"container={container}", "--filter", "event=died", "--format", "json", check=False).stdout
    times = [_unix(json.loads(line)["Time"]) for line in out.splitlines() if line.strip().startswith("{")]
    return min(times) if times else None


def _unix(stamp: str) -> float:
    """podman's RFC 3339 event time (nanoseconds, Z or offset) -> unix seconds."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", stamp)
    assert m, f"unexpected podman event time {stamp!r}"
    base = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    return base.timestamp() + float("0." + (m.group(2) or "0"))


def _running_here(cc, host: str, app: str) -> list[str]:
    out = cc.sim.run(host, "podman", "ps", "--filter", f"label=vcapp.app={app}", "--format", "{{.Names}}").stdout
    return out.split()


def _mount_killed_at(cc, host: str) -> float | None:
    """When the self-fencing on `host` killed the weed mount of ledger/data (its node log)."""
    log = cc.sim.dc.host_dir(host) / "log" / "vcapp-node.log"
    for line in log.read_text(errors="replace").splitlines():
        if "killed the weed mounts of" in line and "ledger/data" in line:
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def _read(cc, host: str, container: str, path: str) -> list[str] | None:
    proc = cc.sim.run(host, "podman", "exec", container, "cat", path, check=False)
    return proc.stdout.splitlines() if proc.returncode == 0 else None


def _ledger_log(cc, host: str, container: str) -> list[str]:
    return _read(cc, host, container, "/data/log") or []


def test_partitioned_machine_stops_its_volume_owner_before_it_may_start_elsewhere(cc):
    create(cc, "ledger", LEDGER, "--memory", "64M", "--volume", "data:/data:64M")
    cc.vcapp("home-1", "volumes", "create", "ledger", "data", "--size", "64M")
    row = cc.wait(lambda: healthy(cc, "ledger"), PLACE_WAIT_S + STORAGE_START_S, "ledger healthy")[0]
    assert _assignment(cc, "ledger").get("volumes") == VOLUMES
    victim, old = row["node"], row["container"]
    # The machine running it has read that assignment: it knows to fence this instance.
    cc.wait(lambda: _status(cc, victim, "ledger").get("owns_volumes"), 30, f"{victim} to know ledger owns a volume")
    watcher = next(m for m in MACHINES if m != victim)
    cc.wait(lambda: len(_ledger_log(cc, victim, old)) > 10, 30, "the ledger writing its log")
    cc.sim.dc.partition(victim, cut=True)  # mid-write: a flush of the cut-off machine is pending
    cut_at = time.monotonic()
    try:
        # The controller moves the assignment once the cut-off machine's lease expires: from
        # then on another machine may take the volume's writer key and start the instance.
        moved = cc.wait(lambda: [e for e in events(cc, on=watcher) if e.get("app") == "ledger"
                                 and e["kind"] == "failover" and e.get("previous_node") == victim],
                        FAILOVER_WAIT_S, "ledger moved off the cut-off machine", interval=0.5)[0]
        # Still cut off: the partitioned machine's own podman has no ledger running ...
        assert _running_here(cc, victim, "ledger") == []
        died = _died_at(cc, victim, old)
        assert died is not None, f"podman on {victim} never saw {old} die"
        print(f"\nfencing: {old} died on {victim} at {died:.2f}; ledger moved at {moved['time']:.2f} "
              f"({moved['time'] - died:+.2f}s later)")
        # ... and it died before anyone else was allowed to start it: never two writers.
        assert died < moved["time"], f"two writers: ledger moved {died - moved['time']:.2f}s before the old one died"
        # Its volume's weed mount was gone before that too: no flush of the old owner can land.
        unmounted = _mount_killed_at(cc, victim)
        assert unmounted is not None and unmounted < moved["time"], (unmounted, moved["time"])
        # ... nor a weed mount of its volume that could still send the filer a write.
        mounts = cc.sim.run(victim, "cat", "/proc/self/mountinfo").stdout.splitlines()
        assert not [m for m in mounts if f"/{victim}/" in m and "/volumes/ledger/data " in m], mounts
        row = cc.wait(lambda: healthy(cc, "ledger", on=watcher), FAILOVER_WAIT_S, "ledger healthy again")[0]
        new_node = row["node"]
        assert new_node != victim
        # What the new owner has written (and its mount acknowledged) by now must outlive the heal.
        written = cc.wait(lambda: _ledger_log(cc, new_node, row["container"]), 30, "the new owner's log")
    finally:
        cc.sim.dc.partition(victim, cut=False)
    cc.wait(lambda: cc.all_up(watcher), HEAL_WAIT_S, f"{victim} back up after its cable returned")
    time.sleep(3)  # a few runtime passes on the healed machine: it must not start ledger again
    assert _running_here(cc, victim, "ledger") == []
    assert [r["node"] for r in ps(cc, "ledger", on=watcher)] == [new_node]
    time.sleep(max(0.0, cut_at + STALE_FLUSH_S - time.monotonic()))
    after = _ledger_log(cc, new_node, row["container"])
    lost = [line for line in written if line not in set(after)]
    assert not lost, f"{len(lost)} of {len(written)} lines the new owner had written are gone: {lost[:5]}"
    assert len(after) > len(written)  # and it went on writing


def test_an_instance_restarted_on_its_machine_after_a_reboot_finds_its_volumes_data(cc):
    """The diary may run on home-3 only. home-3 loses power and boots again: its old container
    is started again there, and must find the volume as it was, not the bare directory under
    the mount point (its weed mount died with the machine)."""
    create(cc, "diary", LEDGER, "--memory", "64M", "--volume", "data:/data", "--constraint", "pool=other")
    row = cc.wait(lambda: healthy(cc, "diary"), PLACE_WAIT_S + STORAGE_START_S, "diary healthy")[0]
    assert row["node"] == "home-3"
    cc.wait(lambda: len(_ledger_log(cc, "home-3", row["container"])) > 10, 30, "the diary writing")
    cc.sim.dc.kill("home-3")
    cc.sim.dc.revive("home-3")
    again = cc.wait(lambda: [r for r in healthy(cc, "diary") if r.get("started_at") != row["started_at"]],
                    HEAL_WAIT_S + PLACE_WAIT_S, "diary running again after home-3's reboot")[0]
    assert again["node"] == "home-3"
    starts = cc.wait(lambda: _read(cc, "home-3", again["container"], "/data/starts"), 30, "the diary's starts")
    assert len(starts) == 2, f"the volume after the reboot holds {starts}: the first start's line is gone"
    log = _ledger_log(cc, "home-3", again["container"])
    assert sum(1 for line in log if " " in line) > 10 and log[0].endswith(" 1"), log[:5]
    # and home-3 has the volume's FUSE mount there again, not a bare directory of its disk
    mounts = cc.sim.run("home-3", "cat", "/proc/self/mountinfo").stdout
    assert "/volumes/diary/data " in mounts and "fuse" in mounts.split("/volumes/diary/data ", 1)[1].split("\n")[0]


def test_short_of_room_after_a_death_the_higher_priority_app_moves_and_the_other_waits_for_room(cc):
    """home-1 runs `web` (priority 10) and `batch` (0); home-2 has room for one of them, home-3
    for neither. Killing home-1: web moves, batch is pending with its reason (by name alone
    batch would have been placed first); home-1 back: batch starts there without admin action."""
    total = min(n["memory_mb"] for n in cc.nodes("home-1").values())
    unit = total // 16
    app_mb, fill_now, fill_later, fill_other = 3 * unit, total - 2 * unit, total - 4 * unit, total - 2 * unit
    small = ("--cpus", "0.1")
    create(cc, "fill-b", SERVE.format(page="fill-b"), "--memory", f"{fill_now}M", "--constraint", "pool=shared", *small)
    create(cc, "fill-c", SERVE.format(page="fill-c"), "--memory", f"{fill_other}M", "--constraint", "pool=other",
           *small)
    for app in ("fill-b", "fill-c"):
        cc.wait(lambda: healthy(cc, app), PLACE_WAIT_S, f"{app} healthy")
    create(cc, "web", SERVE.format(page="web"), "--memory", f"{app_mb}M", "--priority", "10", *small)
    create(cc, "batch", SERVE.format(page="batch"), "--memory", f"{app_mb}M", *small)
    for app in ("web", "batch"):
        row = cc.wait(lambda: healthy(cc, app), PLACE_WAIT_S, f"{app} healthy")[0]
        assert row["node"] == "home-1", f"{app} is on {row['node']}: only home-1 had room for it"
    before = healthy(cc, "fill-b")[0]["release"]
    cc.vcapp("home-1", "scale", "fill-b", "--memory", f"{fill_later}M")  # home-2 now has room for one
    cc.wait(lambda: [r for r in healthy(cc, "fill-b") if r["release"] != before], PLACE_WAIT_S,
            "fill-b's smaller release healthy")
    cc.sim.dc.kill("home-1")
    try:
        web = cc.wait(lambda: [r for r in healthy(cc, "web", on="home-2") if r["node"] != "home-1"],
                      FAILOVER_WAIT_S, "web running elsewhere")[0]
        assert web["node"] == "home-2" and get(cc, web) == "web"
        waiting = cc.wait(lambda: [r for r in ps(cc, "batch", on="home-2") if r["state"] == "pending"], 30,
                          "batch pending")[0]
        assert f"needs {app_mb} MB memory" in waiting["reason"] and "was on home-1" in waiting["reason"], waiting
        assert waiting["node"] is None
        listed = cc.vcapp("home-3", "ps", "batch").stdout
        assert "pending" in listed and f"needs {app_mb} MB memory" in listed
    finally:
        cc.sim.dc.revive("home-1")
    batch = cc.wait(lambda: healthy(cc, "batch", on="home-2"), HEAL_WAIT_S + PLACE_WAIT_S,
                    "batch running again once home-1 is back")[0]
    assert batch["node"] == "home-1"
    # home-1 has just booted: its first answers may take longer than one fetch's 3 s
    cc.wait(lambda: get(cc, batch) == "batch", 20, "batch answering on home-1", interval=1)
    assert [r["node"] for r in healthy(cc, "web", on="home-2")] == ["home-2"]  # not moved back
    kinds = [(e["kind"], e.get("app")) for e in events(cc, on="home-2")]
    assert ("pending", "batch") in kinds and ("failover", "web") in kinds
