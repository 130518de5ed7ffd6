"""`vcapp node leave` on a machine that runs an app with a volume, without a drain first: the
machine takes down what it ran (the app's container, the volume's weed mount, its storage
processes), so nothing of it goes on writing, and the app comes back on another machine with
the data it had written."""

from __future__ import annotations

import json
import time

import pytest

from builder.baseimage import TINY_IMAGE
from tests.control.conftest import start_machines
from vcapp.dev.rigs.waiting import wait_for

pytestmark = pytest.mark.cluster

APP = "diary"
# The first start writes when it started to the volume; every start serves what the volume says.
# As a real app would, it exits when the volume cannot be read (a read error while the storage
# restarts under a move) rather than serve a page it could not fill; the runtime starts it again.
SERVE = ("mkdir -p /www; ls /data > /dev/null || exit 1; [ -e /data/first ] || date +%s%N > /data/first; "
         "cp /data/first /www/index.html || exit 1; exec httpd -f -p 8080 -h /www")
MOVE_TIMEOUT = 180


def running_on(cc, asker: str = "home-1") -> dict | None:
    """The app's healthy instance, as machine `asker`'s API tells."""
    rows = [r for r in json.loads(cc.vcapp(asker, "ps", APP, "--json", check=False).stdout or "[]")
            if r["state"] == "running" and r.get("health") == "healthy"]
    return rows[0] if rows else None


def page(cc, row: dict) -> str:
    got = cc.sim.run(row["node"], "curl", "-sf", "--max-time", "3", f"http://127.0.0.1:{row['host_port']}/",
                     check=False)
    return got.stdout.strip()


def test_a_machine_that_leaves_without_a_drain_stops_its_app_which_comes_back_elsewhere(make_sim, tmp_path_factory):
    # Three machines: the storage shrinks to two under the move, its three Raft masters to one
    # (whose leader once let the leaving machine's master in and was left without a quorum:
    # the volume unreadable for good).
    cc = start_machines(make_sim(home=3, office=0), tmp_path_factory.mktemp("tiny"), count=3)
    cc.vcapp("home-1", "apps", "create", APP, "--image", TINY_IMAGE, "--port", "8080", "--command", SERVE,
             "--health-path", "/", "--memory", "64M", "--volume", "data:/data")
    first = wait_for(lambda: running_on(cc), MOVE_TIMEOUT, f"{APP} running")
    leaver = first["node"]
    written = page(cc, first)
    assert written, first
    asker = next(m for m in cc.machines if m != leaver)
    cc.vcapp(leaver, "node", "leave")

    containers = cc.sim.run(leaver, "podman", "ps", "-a", "--filter", "label=vcapp.managed=true",
                            "--format", "{{.Names}}").stdout.split()
    assert containers == [], containers
    mounts = [line for line in cc.sim.run(leaver, "cat", "/proc/self/mountinfo").stdout.splitlines()
              if str(cc.sim.dc.host_dir(leaver)) in line and "fuse" in line]
    assert mounts == [], mounts
    weeds = cc.sim.run(leaver, "pgrep", "-af", f"weed .*{cc.sim.dc.host_dir(leaver)}", check=False).stdout
    assert weeds.strip() == "", weeds

    moved = wait_for(lambda: (r := running_on(cc, asker)) and r["node"] != leaver and r, MOVE_TIMEOUT,
                     f"{APP} running on another machine")
    # The storage shrinks to two machines behind the move (its processes restart on the others),
    # and an instance whose mount lost its filer meanwhile is restarted: ask whichever runs now.
    began = time.monotonic()
    wait_for(lambda: (r := running_on(cc, asker)) and r["node"] != leaver and page(cc, r) == written, MOVE_TIMEOUT,
             "the moved instance serving the data it had, not a fresh volume",
             detail=lambda: f"{running_on(cc, asker)}: {page(cc, running_on(cc, asker) or moved)!r}")
    print(f"the moved instance served the data {time.monotonic() - began:.1f} s after it first ran")
