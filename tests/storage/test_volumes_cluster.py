"""Issue 8 on the real cluster: an app's volume on replicated storage that the node daemons
run themselves (no storage command by hand), mounted where the instance runs, followed by
the instance when its machine dies; storage degraded with one machine down and healed
without admin action when it returns. Tests run in file order on one cluster."""

from __future__ import annotations

import json
import time

import pytest

from builder.baseimage import TINY_IMAGE
from tests.control.conftest import three_machines

pytestmark = pytest.mark.cluster

RECORDS = 1000
BATCH = 100  # records appended per fsync
# On first start the app appends RECORDS lines in batches, fsyncing each batch (busybox
# `sync FILE` is fsync(2)), then publishes what it finds on the volume: the record count, its
# checksum and whether it wrote them itself (fresh=yes) or found them there (fresh=no).
NOTES = (
    "mkdir -p /www /tmp; f=/data/records.txt; "
    "if [ -f $f ]; then fresh=no; else fresh=yes; i=1; "
    f"while [ $i -le {RECORDS} ]; do echo \"record $i $(date +%s%N)\" >> /tmp/batch; "
    f"if [ $((i % {BATCH})) -eq 0 ]; then cat /tmp/batch >> $f.part && sync $f.part && rm /tmp/batch; fi; "
    "i=$((i+1)); done; mv $f.part $f; sync $f; fi; "
    "echo \"records=$(wc -l < $f) md5=$(md5sum < $f | cut -d' ' -f1) fresh=$fresh\" > /www/index.html; "
    "exec httpd -f -p 8080 -h /www")
PAGE_WAIT_S = 180     # placement, the storage cluster's first start (~30 s), mount, 1000 records
FAILOVER_WAIT_S = 150  # lease expiry, placement, SeaweedFS noticing a dead master, mount
HEAL_WAIT_S = 180     # the machine boots, its volume server registers, the missing copies are made
KILLED: list[str] = []  # the machine the failover test powered off


@pytest.fixture(scope="module")
def cc(make_sim, tmp_path_factory):
    return three_machines(make_sim, tmp_path_factory)


def vcapp_json(cc, on: str, *args: str):
    proc = cc.vcapp(on, *args, "--json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None


def healthy(cc, app: str, on: str) -> list[dict]:
    rows = vcapp_json(cc, on, "ps", app) or []
    return [r for r in rows if r["state"] == "running" and r["health"] == "healthy"]


def page(cc, row: dict, via: str) -> str:
    proc = cc.sim.fetch(f"http://{cc.sim.addr(row['node'])}:{row['host_port']}/index.html", host=via, timeout=5)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def storage_state(cc, on: str) -> str | None:
    answer = vcapp_json(cc, on, "volumes", "list")
    return answer["storage"].get("state") if answer else None


def test_bad_volume_requests_are_refused_and_change_nothing(cc):
    out = cc.vcapp("home-1", "volumes", "create", "ghost", "data", "--size", "64M", check=False)
    assert out.returncode != 0 and "no app ghost" in out.stderr, out.stderr
    out = cc.vcapp("home-1", "apps", "create", "twins", "--image", TINY_IMAGE, "--count", "2",
                   "--volume", "data:/data", check=False)
    assert out.returncode != 0 and "1 instance" in out.stderr, out.stderr
    out = cc.vcapp("home-1", "apps", "create", "badpath", "--image", TINY_IMAGE, "--volume", "data:data", check=False)
    assert out.returncode != 0 and "absolute path" in out.stderr, out.stderr
    listed = vcapp_json(cc, "home-1", "volumes", "list")
    assert listed == {"volumes": [], "storage": {"state": "off"}}
    assert "twins" not in cc.vcapp("home-1", "apps").stdout


def test_app_data_on_its_volume_follows_the_app_to_another_machine(cc):
    cc.vcapp("home-1", "apps", "create", "notes", "--image", TINY_IMAGE, "--port", "8080", "--command", NOTES,
             "--health-path", "/index.html", "--memory", "64M", "--volume", "data:/data")
    out = cc.vcapp("home-1", "volumes", "create", "notes", "data", "--size", "64M").stdout
    assert "ready: 64 MB" in out
    row = cc.wait(lambda: healthy(cc, "notes", "home-1"), PAGE_WAIT_S, "notes healthy on its volume", interval=1)[0]
    first = page(cc, row, via="home-1")
    assert first.startswith(f"records={RECORDS} md5=") and first.endswith("fresh=yes"), first
    victim = row["node"]
    # The volume is a FUSE mount of the replicated storage on the instance's machine, not a local directory.
    mounts = cc.sim.run(victim, "cat", "/proc/self/mountinfo").stdout
    assert any("/volumes/notes/data " in line and "fuse" in line for line in mounts.splitlines()), mounts
    watcher = next(m for m in cc.machines if m != victim)
    killed = time.monotonic()
    cc.sim.dc.kill(victim)

    def moved():
        rows = [r for r in healthy(cc, "notes", watcher) if r["node"] != victim]
        return rows and page(cc, rows[0], via=watcher).startswith("records=") and rows

    new = cc.wait(moved, FAILOVER_WAIT_S, "notes answering on another machine", interval=1)[0]
    took = time.monotonic() - killed
    after = page(cc, new, via=watcher)
    print(f"\nvolume failover: {victim} killed, notes answering on {new['node']} with its data after {took:.1f}s")
    assert after == first.replace("fresh=yes", "fresh=no"), (first, after)  # every record, same checksum
    # One machine down: writes go on (degraded, two copies) and are read back.
    cc.sim.run(new["node"], "podman", "exec", new["container"], "sh", "-c",
               "echo 'written while degraded' >> /data/late.txt && sync /data/late.txt")
    late = cc.sim.run(new["node"], "podman", "exec", new["container"], "cat", "/data/late.txt").stdout
    assert late.strip() == "written while degraded"
    cc.wait(lambda: storage_state(cc, watcher) == "degraded", 60, "storage shown degraded", interval=1)
    KILLED.append(victim)  # for the next test: the machine to bring back


def test_storage_heals_when_the_machine_returns(cc):
    assert KILLED, "the failover test must run first"
    victim = KILLED[0]
    cc.sim.dc.revive(victim)
    cc.wait(lambda: storage_state(cc, "home-1" if victim != "home-1" else "home-2") == "healthy", HEAL_WAIT_S,
            "storage healthy again (3 copies) after the machine returned", interval=2)
    events = vcapp_json(cc, "home-2" if victim != "home-2" else "home-3", "events", "--limit", "500") or []
    kinds = [e["message"] for e in events if e["kind"] == "storage"]
    assert any(m.startswith("storage degraded") for m in kinds) and any(m.startswith("storage healthy")
                                                                        for m in kinds), kinds
