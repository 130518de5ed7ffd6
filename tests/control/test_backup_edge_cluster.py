"""A backup restored as docs/backups.md tells, on a cluster behind an edge: `vcapp dev up`'s
machines at two NATed sites and an edge, an app with a volume reached over HTTPS through the
edge; a backup; every host's disk lost (the edge's too); new hosts where `vcapp backup
restore --edge` founds the cluster (its new mesh key given to `vcapp edge setup`, a new
edge-scoped token for the routes), the others join, and the app serves its volume's data
through the edge again. platform.install is the `vcapp dev up` path, with `restore=`."""

from __future__ import annotations

import subprocess

import pytest

from builder.baseimage import TINY_IMAGE, tiny_build_command, tiny_context
from vcapp.dev import platform
from vcapp.dev.rigs.waiting import wait_for

pytestmark = pytest.mark.cluster

APP = "web"
# Each start appends a line to the volume, so a restored volume shows the lines of before and one more.
SERVE = ("mkdir -p /www; cat /proc/sys/kernel/random/uuid >> /data/starts; cp /data/starts /www/index.html; "
         "exec httpd -f -p 8080 -h /www")
SERVE_TIMEOUT = 300


def through_edge(sim) -> str | None:
    host = f"{APP}.{platform.DOMAIN}"
    got = sim.fetch(f"https://{host}/", "-f", "-k", "--resolve", f"{host}:443:{sim.addr('edge')}", timeout=10)
    return got.stdout.strip() if got.returncode == 0 else None


def test_a_cluster_behind_an_edge_restored_on_new_hosts_serves_through_the_edge(make_sim, tmp_path_factory):
    keys = tmp_path_factory.mktemp("admin")
    key = keys / "backup-key.txt"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)

    old = make_sim(home=2, office=1)
    ctx = tiny_context(tmp_path_factory.mktemp("tiny"))
    for m in old.dc.topology.machines():
        old.run(m.name, *tiny_build_command(ctx), timeout=300)
    platform.install(old.dc, say=lambda line: None)
    old.run("home-1", "vcapp", "apps", "create", APP, "--image", TINY_IMAGE, "--port", "8080", "--command", SERVE,
            "--health-path", "/", "--memory", "64M", "--volume", "data:/data:64M", timeout=60)
    old.run("home-1", "vcapp", "volumes", "create", APP, "data", "--size", "64M", timeout=300)
    before = wait_for(lambda: through_edge(old), SERVE_TIMEOUT,
                      f"https://{APP}.{platform.DOMAIN}/ through the edge").splitlines()
    old.run("home-2", "vcapp", "backup", "create", "-r", str(key), "-o", str(keys), timeout=300)
    backup = next(keys.glob("vcapp-backup-dev-*.tar.age"))
    old.dc.down()

    new = make_sim(home=2, office=1)  # new hosts, the edge among them: nothing of before on any disk
    platform.install(new.dc, say=lambda line: None, restore=(backup, key))
    after = wait_for(lambda: (page := through_edge(new)) and len(page.splitlines()) > len(before) and page,
                     SERVE_TIMEOUT, f"the restored {APP} through the new edge",
                     detail=lambda: str(through_edge(new))).splitlines()
    assert after[:len(before)] == before, (before, after)  # the volume's lines from before, then the new start's
