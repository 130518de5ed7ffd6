"""`vcapp dev up/status/down` as an admin uses them: idempotent up, complete down."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.baseimage import TINY_IMAGE, tiny_build_command, tiny_context
from tests.conftest import _new_name, claim
from vcapp.dev import egress, netns
from vcapp.dev.cluster import DevCluster

pytestmark = pytest.mark.cluster


# `dev up` founds the cluster, joins two machines (sealed joins, etcd certificates), starts the
# edge and the proxy, and deploys the sample app: a minute or two on a loaded 2-core host.
DEV_UP_TIMEOUT = 300


def vcapp(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    timeout = DEV_UP_TIMEOUT if args[:2] == ("dev", "up") else 120
    proc = subprocess.run([sys.executable, "-m", "vcapp", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def host_snapshot() -> dict:
    """What of the host's own state a cluster could leave behind. The proxy links of clusters
    (vx<cluster>, vcapp/dev/egress.py) are left out: other clusters come and go meanwhile;
    the test checks its own cluster's link by name."""
    def out(*cmd):
        return subprocess.run(cmd, capture_output=True, text=True).stdout

    return {
        "links": sorted(name for line in out("ip", "-o", "link").splitlines()
                        if not (name := line.split(":")[1].strip()).startswith(egress.host_link(""))),
        "routes": "".join(line for line in out("ip", "route").splitlines(keepends=True)
                          if f" dev {egress.host_link('')}" not in line),
        "iptables": "\n".join(l for l in out("iptables-save").splitlines() if not l.startswith("#")),
        "forwarding": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
    }


@pytest.fixture
def name():
    n = claim(_new_name()).name
    yield n
    DevCluster(n).down()


def test_up_status_down_leaves_nothing_behind(name):
    before = host_snapshot()

    up = vcapp("dev", "up", "--cluster", name, "--bare")
    assert "home-1" in up.stdout and "10.1.0.11/24" in up.stdout and "203.0.113.10/24" in up.stdout
    assert "vcapp dev" in up.stdout  # tells what to do next
    dc = DevCluster(name)
    ctx = tiny_context(dc.host_dir("office-1") / "data" / "ctx")
    assert dc.run("office-1", tiny_build_command(ctx)).returncode == 0
    run = dc.run("office-1", ["podman", "run", "-d", TINY_IMAGE, "sleep", "600"])
    assert run.returncode == 0, run.stderr
    status = json.loads(vcapp("dev", "status", "--cluster", name, "--json").stdout)
    hosts = {h["name"]: h for h in status["hosts"]}
    assert set(hosts) == {"edge", "client", "home", "home-1", "home-2", "office", "office-1"}
    assert hosts["office-1"]["addresses"]["eth0"] == ["10.2.0.11/24"]
    assert hosts["home"]["addresses"]["wan"] == ["203.0.113.21/24"]
    assert all(hosts[h]["power"] == "on" for h in ("edge", "client", "home-1", "home-2", "office-1"))

    proxy_link = ["ip", "link", "show", egress.host_link(name)]
    assert subprocess.run(proxy_link, capture_output=True).returncode == 0  # the one way out
    proxy = egress.proxy_pid(DevCluster(name).egress_dir)
    assert proxy

    container_netns = netns.peer_namespaces(f"vc-{name}-office-1")
    assert container_netns  # podman gave the container a namespace of its own

    vcapp("dev", "down", "--cluster", name)

    left = set(os.listdir("/var/run/netns"))
    assert not [ns for ns in left if ns.startswith(f"vc-{name}-")] and not left & set(container_netns)
    assert not [l for l in open("/proc/self/mountinfo") if f"/{name}/" in l]
    assert not Path(f"/sys/fs/cgroup/pids/vcapp/{name}").exists()
    assert not Path(f"/run/vc/{name}").exists() and not dc.dir.exists()
    assert host_snapshot() == before
    assert subprocess.run(proxy_link, capture_output=True).returncode != 0
    cmdline = Path(f"/proc/{proxy}/cmdline")
    assert not cmdline.exists() or not cmdline.read_bytes()  # its proxy stopped (gone, or a zombie)
    assert "not up" in vcapp("dev", "status", "--cluster", name, check=False).stderr


def test_up_twice_is_safe_and_keeps_machines_running(name):
    vcapp("dev", "up", "--cluster", name, "--home", "1", "--office", "1", "--bare")
    dc = DevCluster(name)
    pids = dc.host_pids("home-1")
    vcapp("dev", "up", "--cluster", name, "--home", "1", "--office", "1", "--bare")
    assert dc.host_pids("home-1") == pids
    other_shape = vcapp("dev", "up", "--cluster", name, "--home", "3", "--bare", check=False)
    assert other_shape.returncode != 0 and "another shape" in other_shape.stderr


def test_down_cleans_up_after_a_crash_that_lost_the_state(name):
    vcapp("dev", "up", "--cluster", name, "--home", "1", "--office", "0", "--bare")
    DevCluster(name).state_file.unlink()  # as if the disk lost it mid-way
    vcapp("dev", "down", "--cluster", name)
    assert not [ns for ns in os.listdir("/var/run/netns") if ns.startswith(f"vc-{name}-")]
    assert not Path(f"/sys/fs/cgroup/pids/vcapp/{name}").exists()


def test_cli_exec_kill_revive(name):
    vcapp("dev", "up", "--cluster", name, "--home", "1", "--office", "0", "--bare")
    assert vcapp("dev", "exec", "--cluster", name, "home-1", "--", "hostname").stdout.strip() == "home-1"
    assert vcapp("dev", "exec", "--cluster", name, "home-1", "--", "sh", "-c", "exit 3", check=False).returncode == 3
    assert "powered off" in vcapp("dev", "kill", "--cluster", name, "home-1").stdout
    refused = vcapp("dev", "exec", "--cluster", name, "home-1", "--", "true", check=False)
    assert refused.returncode != 0 and "vcapp dev revive home-1" in refused.stderr
    vcapp("dev", "revive", "--cluster", name, "home-1")
    assert vcapp("dev", "exec", "--cluster", name, "home-1", "--", "hostname").stdout.strip() == "home-1"
    unknown = vcapp("dev", "kill", "--cluster", name, "home-9", check=False)
    assert unknown.returncode != 0 and "no host 'home-9'" in unknown.stderr


def test_dev_up_runs_vcapp_on_every_machine_and_again_is_safe(name):
    first = vcapp("dev", "up", "--cluster", name)
    assert "3 up, 0 down" in first.stdout, first.stdout
    assert "home-1" in first.stdout and "office-1" in first.stdout and "100.96.0." in first.stdout
    dc = DevCluster(name)
    daemons = long_lived(dc, "home-1")
    again = vcapp("dev", "up", "--cluster", name)
    assert "founding" not in again.stdout and "joining" not in again.stdout
    assert "3 up, 0 down" in again.stdout
    gone = set(daemons) - dc.host_pids("home-1")
    assert not gone, f"restarted: {[daemons[p] for p in gone]}"


def long_lived(dc: DevCluster, host: str, apart: float = 5.0) -> dict[int, str]:
    """pid -> command line of the host's processes alive in two looks `apart` seconds apart: its
    daemons, not a health probe or a registry copy that happens to run at the first look."""
    first = {p: _cmdline(p) for p in dc.host_pids(host)}
    time.sleep(apart)
    still = dc.host_pids(host)
    return {p: cmd for p, cmd in first.items() if p in still}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"
