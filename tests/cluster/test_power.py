"""Simulated machines power off for real, boot again with their disks, and run podman."""


import pytest

from builder.baseimage import TINY_IMAGE, tiny_build_command, tiny_context
from vcapp.dev.power import alive
from vcapp.dev.rigs.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def tiny_on_home1(sim):
    ctx = tiny_context(sim.dc.host_dir("home-1") / "data" / "tiny-ctx")
    sim.run("home-1", *tiny_build_command(ctx))
    return TINY_IMAGE


def test_machine_runs_a_container_from_a_locally_built_base_image(sim, tiny_on_home1):
    out = sim.run("home-1", "podman", "run", "--rm", tiny_on_home1, "sh", "-c", "echo hello from $(hostname -s)")
    assert out.stdout.startswith("hello from ")
    # The image exists only in home-1's storage: machines do not share podman state.
    other = sim.run("home-2", "podman", "image", "exists", tiny_on_home1, check=False)
    assert other.returncode != 0


def test_kill_leaves_no_process_alive_and_revive_boots_with_the_disk(sim, tiny_on_home1):
    dc = sim.dc
    (dc.host_dir("home-1") / "data" / "kept.txt").write_text("on disk")
    (dc.run_dir("home-1") / "lost.txt").write_text("in /run")
    sim.run("home-1", "podman", "run", "-d", "--name", "sleeper",
            "--cgroup-parent", dc.host_env("home-1")["VCAPP_CGROUP_PARENT"], tiny_on_home1, "sleep", "600")
    # A paused container (the node's volume compaction pauses its app a moment) is frozen in a
    # cgroup of its own: it dies with the machine too, and its pause is gone after the boot.
    sim.run("home-1", "podman", "run", "-d", "--name", "paused",
            "--cgroup-parent", dc.host_env("home-1")["VCAPP_CGROUP_PARENT"], tiny_on_home1, "sleep", "600")
    sim.run("home-1", "podman", "pause", "paused")
    background = sim.spawn("home-1", "sleep", "600")
    container_pid = int(sim.run("home-1", "podman", "inspect", "-f", "{{.State.Pid}}", "sleeper").stdout)
    paused_pid = int(sim.run("home-1", "podman", "inspect", "-f", "{{.State.Pid}}", "paused").stdout)
    assert dc.host_pids("home-1")

    killed = dc.kill("home-1")

    assert killed >= 4  # init, the background sleep, the two containers (and their conmons)
    assert dc.host_pids("home-1") == set()
    background.wait(timeout=5)
    assert not alive(container_pid)
    assert not alive(paused_pid)
    assert not sim.ping("home-2", sim.addr("home-1"))  # its link is down
    with pytest.raises(Exception, match="powered off"):
        sim.run("home-1", "true")

    dc.revive("home-1")

    assert sim.run("home-1", "hostname").stdout.strip() == "home-1"
    assert (dc.host_dir("home-1") / "data" / "kept.txt").read_text() == "on disk"
    assert not (dc.run_dir("home-1") / "lost.txt").exists()
    assert sim.ping("home-2", sim.addr("home-1"), count=3)
    # podman came back clean: the old container is stopped and can start again.
    state = sim.run("home-1", "podman", "inspect", "-f", "{{.State.Status}}", "sleeper").stdout.strip()
    assert state in ("exited", "stopped", "created", "configured")
    sim.run("home-1", "podman", "start", "sleeper")
    assert sim.run("home-1", "podman", "inspect", "-f", "{{.State.Running}}", "sleeper").stdout.strip() == "true"
    sim.run("home-1", "podman", "rm", "-f", "-t", "0", "sleeper", "paused")


def test_services_start_at_every_boot(sim):
    dc = sim.dc
    marker = dc.host_dir("home-2") / "data" / "boots"
    dc.add_service("home-2", "bootcount", ["sh", "-c", f"echo boot >> {marker}; exec sleep 600"])
    wait_for(lambda: marker.exists() and marker.read_text().count("boot") == 1, 10, "the first boot", 0.05)
    dc.kill("home-2")
    dc.revive("home-2")
    wait_for(lambda: marker.read_text().count("boot") == 2, 10, "the second boot", 0.05)
    assert "bootcount" in {s for h in dc.status()["hosts"] if h["name"] == "home-2" for s in h["services"]}
