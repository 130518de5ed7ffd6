"""`vcapp node drain NAME --storage` on four machines: every copy of app data on NAME moves to
the other three (SeaweedFS volumeServer.evacuate, run by the controller), NAME then runs no
volume server, the app reads the same records and writes new ones meanwhile, and `vcapp node
undrain` gives NAME its volume server back. Four machines: with three, the data would have
nowhere to go (tests/api/test_drain.py has that refusal)."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

import pytest

from builder.baseimage import TINY_IMAGE
from vcapp.dev.rigs.control import start_machines

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

APP = "ledger"
RECORDS = 300
# Writes RECORDS lines once, fsynced, then serves their count and checksum. The lines reach the
# volume whole, as a crash-safe app writes them (a part file renamed once complete): an instance
# stopped while writing (its start grace run out on a loaded machine, or moved) leaves no short file
# for the next one to serve.
LEDGER = ("mkdir -p /www /tmp; f=/data/ledger.txt; "
          f"[ -f $f ] || {{ i=1; while [ $i -le {RECORDS} ]; do echo \"entry $i\"; i=$((i+1)); done > /tmp/ledger; "
          "cp /tmp/ledger $f.part && sync $f.part && mv $f.part $f && sync $f; }; "
          "echo \"records=$(wc -l < $f) md5=$(md5sum < $f | cut -d' ' -f1)\" > /www/index.html; "
          "exec httpd -f -p 8080 -h /www")
PAGE_WAIT_S = 180     # placement, the storage cluster's first start, the mount, the records
EVACUATE_WAIT_S = 180  # the controller sees the drain, moves each volume copy, then the plan drops the server
# Run on a machine: every volume copy as the storage cluster lists it (storage/shell.py).
COPIES = """
import json
from storage import shell
from storage.host import LocalHost, weed_binary
from vcapp.machine import NodeConfig
from vcapp.state import volumes
from vcapp.state.store import Store
cfg = NodeConfig.load()
plan = volumes.storage_plan(Store(cfg.store_endpoints()), cfg)
print(json.dumps(shell.volume_copies(plan, LocalHost(cfg.name), weed_binary())))
"""


@pytest.fixture(scope="module")
def cc(make_sim, tmp_path_factory):
    return start_machines(make_sim(home=4, office=0), tmp_path_factory.mktemp("tiny"), count=4)


def copies(cc, on: str) -> list[dict]:
    out = cc.sim.run(on, sys.executable, "-c", COPIES, check=False, timeout=180)
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else []


def servers(cc) -> dict[str, str]:
    """machine -> its volume server's host:port."""
    return {m: f"{cc.sim.addr(m)}:8080" for m in cc.machines}


def storage(cc, on: str) -> dict:
    out = cc.vcapp(on, "status", "--json", check=False)
    return json.loads(out.stdout)["storage"] if out.returncode == 0 else {}


def healthy(cc, on: str) -> list[dict]:
    out = cc.vcapp(on, "ps", APP, "--json", check=False)
    rows = json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else []
    return [r for r in rows if r["state"] == "running" and r["health"] == "healthy"]


def page(cc, row: dict) -> str:
    out = cc.sim.fetch(f"http://127.0.0.1:{row['host_port']}/index.html", host=row["node"], timeout=5)
    return out.stdout.strip() if out.returncode == 0 else ""


def test_a_storage_drain_moves_every_copy_off_and_undrain_takes_the_machine_back(cc):
    cc.vcapp("home-1", "apps", "create", APP, "--image", TINY_IMAGE, "--port", "8080", "--command", LEDGER,
             "--health-path", "/index.html", "--memory", "64M", "--volume", "data:/data:64M")
    cc.sim.run("home-1", "vcapp", "volumes", "create", APP, "data", "--size", "64M", timeout=300)
    row = cc.wait(lambda: healthy(cc, "home-1"), PAGE_WAIT_S, f"{APP} healthy on its volume", interval=1)[0]
    before = page(cc, row)
    assert before.startswith(f"records={RECORDS} md5="), before
    where = {c["node"] for c in copies(cc, "home-1")}
    # a machine holding copies, not the one running the app: only the data moves
    drained = next(m for m in sorted(cc.machines, reverse=True) if servers(cc)[m] in where and m != row["node"])
    watcher = row["node"]
    began = time.monotonic()
    out = cc.vcapp(watcher, "node", "drain", drained, "--storage").stdout
    assert "its copies of app data move" in out, out
    assert "drained with storage" in cc.vcapp(watcher, "nodes").stdout
    cc.wait(lambda: drained in storage(cc, watcher).get("evacuated", []), EVACUATE_WAIT_S,
            f"{drained}'s copies moved off", interval=2)
    print(f"\n{drained} drained with its storage: no copy left there after {time.monotonic() - began:.1f}s")
    after = copies(cc, watcher)
    assert after and servers(cc)[drained] not in {c["node"] for c in after}, after
    per_volume = Counter(c["id"] for c in after)
    assert set(per_volume.values()) == {3}, per_volume  # every volume still has three copies, on the others
    assert f"no data on {drained}" in cc.vcapp(watcher, "status").stdout
    cc.wait(lambda: cc.sim.fetch(f"http://{cc.sim.addr(drained)}:8080/status", host=drained, timeout=3).returncode
            != 0, 30, f"{drained}'s volume server stopped", interval=1)
    # the app reads every record and writes new ones with the machine's storage drained
    assert page(cc, row) == before
    cc.sim.run(row["node"], "podman", "exec", row["container"], "sh", "-c",
               "echo 'after the drain' >> /data/late.txt && sync /data/late.txt")
    assert cc.sim.run(row["node"], "podman", "exec", row["container"], "cat", "/data/late.txt").stdout.strip() \
        == "after the drain"
    events = json.loads(cc.vcapp(watcher, "events", "--limit", "200", "--json").stdout)
    assert any(e["kind"] == "storage" and e["message"].startswith(f"{drained}'s copies of app data moved")
               for e in events), events
    # back: the machine runs its volume server again
    assert "takes instances again" in cc.vcapp(watcher, "node", "undrain", drained).stdout
    cc.wait(lambda: cc.sim.fetch(f"http://{cc.sim.addr(drained)}:8080/status", host=drained, timeout=3).returncode
            == 0, 60, f"{drained}'s volume server running again", interval=1)
    assert drained not in storage(cc, watcher).get("evacuated", [])
