"""The node agent on a simulated machine, with real podman and the tiny busybox image."""

from __future__ import annotations

import json
import time

import pytest

from runtime import keptlogs
from runtime.podman import RETIRING_MARK, PodmanDriver
from runtime.reconcile import backoff_s
from runtime.spec import DEFAULT_KILL_TIMEOUT_S
from runtime.supervisor import Agent
from vcapp.dev.rigs.waiting import wait_for
from tests.runtime.conftest import AgentOnHost, HostShell, web
from vcapp.dev.power import alive

pytestmark = pytest.mark.cluster

KEY = "web/0"
DKEY = "deploy/0"


def healthy(rep: dict) -> bool:
    return rep.get("state") == "running" and rep.get("health") == "healthy"


def get(sim, host: str, port: int, from_host: str | None = None, addr: str = "127.0.0.1") -> str:
    proc = sim.run(from_host or host, "curl", "-sS", "--max-time", "3", f"http://{addr}:{port}/index.html",
                   check=False)
    return proc.stdout.strip() if proc.returncode == 0 else f"<curl failed: {proc.stderr.strip()}>"


def test_instance_starts_with_limits_and_goes_healthy(agent, machine, record_property):
    started = time.monotonic()
    agent.want([web(page="hello", env={"MODE": "test"}, secrets=["TOKEN"])], {"web": {"TOKEN": "s3cret-value"}})
    rep = agent.wait(KEY, healthy, "healthy")
    record_property("start_to_healthy_s", round(time.monotonic() - started, 2))
    print(f"\nstart to healthy: {time.monotonic() - started:.2f}s; agent rss {agent.status()['rss_mb']} MB; "
          f"step {agent.status()['step_s']}s")
    port = rep["host_port"]
    assert get(machine, "home-1", port) == "hello"
    # Published on the machine's loopback only: a neighbour on the LAN does not reach it (the
    # node router is the way in, and it enforces the app's access policy).
    assert get(machine, "home-1", port, from_host="home-2", addr=machine.addr("home-1")).startswith("<curl failed")
    assert get(machine, "home-1", port, addr=machine.addr("home-1")).startswith("<curl failed")
    info = json.loads(agent.podman("inspect", rep["container"]).stdout)[0]
    assert info["HostConfig"]["Memory"] == 64 * 2**20
    assert info["HostConfig"]["PidsLimit"] == 64
    assert info["HostConfig"]["CgroupParent"] == f"/vcapp/{machine.name}/home-1"
    assert info["Config"]["Labels"]["vcapp.app"] == "web"
    # The kernel enforces it: the container's memory cgroup has the limit.
    pid = info["State"]["Pid"]
    mem_path = [l.split(":", 2)[2] for l in open(f"/proc/{pid}/cgroup").read().splitlines() if ":memory:" in l][0]
    assert mem_path.startswith(f"/vcapp/{machine.name}/home-1/")
    assert open(f"/sys/fs/cgroup/memory{mem_path}/memory.limit_in_bytes").read().strip() == str(64 * 2**20)
    assert rep["memory_limit_mb"] == 64 and rep["memory_mb"] > 0
    env = agent.podman("exec", rep["container"], "env").stdout
    assert "MODE=test" in env and "TOKEN=s3cret-value" in env
    assert "s3cret-value" not in agent.log.read_text() and "s3cret-value" not in agent.status_file.read_text()


def test_a_new_instance_is_reported_healthy_without_waiting_for_the_next_pass(machine, tmp_path):
    """The agent probes a new instance from its start until it passes, and steps again then:
    here its passes are 60 s apart, and the instance is still reported healthy in seconds."""
    slow = AgentOnHost(machine, "home-2", tmp_path / "slow", interval=60.0, assignments=[web(app="quick")])
    try:
        rep = slow.wait("quick/0", healthy, "healthy before the agent's next pass", timeout=20)
        assert get(machine, "home-2", rep["host_port"]) == "hello"
    finally:
        slow.stop()
        slow.podman("rm", "-f", "-t", "0", "vc-quick-0-r1", check=False)


def _kill_container(agent, rep: dict) -> None:
    pid = json.loads(agent.podman("inspect", rep["container"]).stdout)[0]["State"]["Pid"]
    agent.sim.run("home-1", "kill", "-9", str(pid))


def test_crashed_instance_restarts_with_backoff(agent, machine):
    agent.want([web()])
    rep = agent.wait(KEY, healthy, "healthy")
    restarts = rep["restarts"]
    _kill_container(agent, rep)
    rep = agent.wait(KEY, lambda r: r["restarts"] == restarts + 1 and healthy(r), "restarted once")
    assert get(machine, "home-1", rep["host_port"]) == "hello"  # same container, same port
    # Crash again at once: the second restart waits a longer back-off, and the report says so.
    _kill_container(agent, rep)
    waiting = agent.wait(KEY, lambda r: "back-off" in r["message"] and r["state"] == "exited", "backing off")
    assert f"back-off {backoff_s(1):g}s" in waiting["message"]
    rep = agent.wait(KEY, lambda r: r["restarts"] == restarts + 2 and healthy(r), "restarted twice")


def test_failing_release_is_not_promoted_and_good_one_is(agent, machine):
    agent.want([web(app="deploy", release="1", page="one")])
    old = agent.wait(DKEY, lambda r: healthy(r) and r["release"] == "1", "release 1 healthy")
    # Release 2 serves no /index.html: its health check gets 404 and it must not take over.
    broken = ["sh", "-c", "mkdir -p /www && exec httpd -f -p 8080 -h /www"]
    agent.want([web(app="deploy", release="2", command=broken, health={"type": "http", "path": "/index.html",
                                                         "start_grace_s": 3})])
    rep = agent.wait(DKEY, lambda r: (r.get("promotion") or {}).get("outcome") == "refused", "reported as refused")
    assert rep["promotion"]["release"] == "2" and "HTTP 404" in rep["promotion"]["check"]
    assert "release 1 keeps serving" in rep["message"]  # and in words, for people
    assert rep["release"] == "1" and rep["host_port"] == old["host_port"]
    assert get(machine, "home-1", old["host_port"]) == "one"
    names = agent.podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert "vc-deploy-0-r2" not in names and "vc-deploy-0-r1" in names
    # Release 3 is good: it takes over, the old container is gone.
    agent.want([web(app="deploy", release="3", page="three")])
    new = agent.wait(DKEY, lambda r: healthy(r) and r["release"] == "3", "release 3 healthy")
    assert get(machine, "home-1", new["host_port"]) == "three"
    # The old one drains first (busybox ignores SIGTERM: the whole kill_timeout), then goes.
    wait_for(lambda: not names_of(agent, "vc-deploy-0-r1"), DEFAULT_KILL_TIMEOUT_S + 20,
             "release 1's container drained and removed", interval=0.5)


def names_of(agent, container: str) -> list[str]:
    """The names of `container` and of its retiring predecessors (renamed while they drain)."""
    names = agent.podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    return [n for n in names if n == container or n.startswith(container + RETIRING_MARK)]


def test_an_instance_sent_back_while_its_old_container_drains_starts_at_once(agent, machine):
    """Moved away and back (a failover onto a machine that was cut off a moment ago): its new
    container does not wait for the old one's stop timeout to take its name."""
    agent.want([web(app="bounce", page="first")])
    first = agent.wait("bounce/0", healthy, "healthy")
    agent.want([])
    wait_for(lambda: "bounce/0" not in agent.status().get("instances", {}), 10, "the instance gone from the "
             "reports (its container draining)", interval=0.1)
    sent_back = time.monotonic()
    agent.want([web(app="bounce", page="again")])
    rep = agent.wait("bounce/0", lambda r: healthy(r) and r["started_at"] != first["started_at"], "started again")
    took = time.monotonic() - sent_back
    assert took < DEFAULT_KILL_TIMEOUT_S - 2, f"{took:.1f}s: it waited for the old one to drain"
    draining = [n for n in names_of(agent, "vc-bounce-0-r1") if RETIRING_MARK in n]
    assert draining, "the old container (busybox ignores SIGTERM) still drains, under another name"
    assert rep["container"] == "vc-bounce-0-r1" and get(machine, "home-1", rep["host_port"]) == "again"
    wait_for(lambda: names_of(agent, "vc-bounce-0-r1") == ["vc-bounce-0-r1"], DEFAULT_KILL_TIMEOUT_S + 20,
             "the old one drained and removed", interval=0.5)


def test_a_retiring_container_a_restarted_agent_finds_is_retired_not_served(agent, machine):
    """A daemon that stopped while a container drained leaves it renamed: the next one finishes
    its retirement and starts the instance afresh under its own name."""
    agent.want([web(app="orphan")])
    rep = agent.wait("orphan/0", healthy, "healthy")
    agent.podman("rename", "vc-orphan-0-r1", "vc-orphan-0-r1" + RETIRING_MARK + "abc123")
    again = agent.wait("orphan/0", lambda r: healthy(r) and r["started_at"] != rep["started_at"], "started afresh")
    assert again["container"] == "vc-orphan-0-r1"
    wait_for(lambda: names_of(agent, "vc-orphan-0-r1") == ["vc-orphan-0-r1"], DEFAULT_KILL_TIMEOUT_S + 20,
             "the leftover retired", interval=0.5)


def test_a_port_that_stops_forwarding_is_noticed_and_restored_without_restarting_the_app(agent, machine):
    """Rootful podman keeps a listening socket of its own on every published port. With the
    port's forwarding rules gone, a connect to it still succeeds (on that socket) and a TCP
    health check passed while nobody could reach the app. The agent tells the two apart and
    writes the rules again; the app is not restarted for it."""
    agent.want([web(app="plain", health={"type": "tcp", "start_grace_s": 10})])
    rep = agent.wait("plain/0", healthy, "healthy")
    port = rep["host_port"]
    assert get(machine, "home-1", port) == "hello"
    pid = json.loads(agent.podman("inspect", rep["container"]).stdout)[0]["State"]["Pid"]
    machine.run("home-1", "iptables", "-w", "-t", "nat", "-F", "NETAVARK-HOSTPORT-DNAT")
    assert get(machine, "home-1", port).startswith("<curl failed")
    deadline = time.monotonic() + 15
    while get(machine, "home-1", port) != "hello":
        assert time.monotonic() < deadline, f"port {port} still not forwarded; agent log:\n" \
                                            f"{agent.log.read_text()[-2000:]}"
    assert "not forwarded to the container" in agent.log.read_text()
    after = agent.wait("plain/0", healthy, "healthy again")
    assert after["container"] == rep["container"] and after["restarts"] == rep["restarts"]
    assert json.loads(agent.podman("inspect", rep["container"]).stdout)[0]["State"]["Pid"] == pid


def _ip(agent, container: str) -> str:
    return agent.podman("inspect", container, "--format",
                        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}").stdout.strip()


def test_apps_cannot_reach_each_other_directly(agent, machine):
    agent.want([web(app="alpha", page="alpha"), web(app="beta", page="beta")])
    a = agent.wait("alpha/0", healthy, "healthy")
    b = agent.wait("beta/0", healthy, "healthy")
    probe = "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {} {}"
    direct = agent.podman("exec", b["container"], "sh", "-c", probe.format(_ip(agent, a["container"]), 8080),
                          check=False)
    assert "alpha" not in direct.stdout
    # Nor through alpha's published port: it is on the machine's loopback, which no container
    # reaches (apps reach each other through their public URLs, past the routers).
    published = agent.podman("exec", b["container"], "sh", "-c",
                             probe.format(machine.addr("home-1"), a["host_port"]), check=False)
    assert "alpha" not in published.stdout
    assert get(machine, "home-1", a["host_port"]) == "alpha"  # while the machine itself does
    # Inside one app's network, its own containers do reach each other.
    agent.want([web(app="alpha", page="alpha"), web(app="alpha", instance="1", page="alpha1")])
    a1 = agent.wait("alpha/1", healthy, "healthy")
    same = agent.podman("exec", a1["container"], "sh", "-c", probe.format(_ip(agent, a["container"]), 8080),
                        check=False)
    assert "alpha" in same.stdout
    # beta's network goes with its last container, once that has drained
    wait_for(lambda: "vc-app-beta" not in agent.podman("network", "ls", "--format", "{{.Name}}").stdout.split(),
             DEFAULT_KILL_TIMEOUT_S + 20, "beta's network removed after its container", interval=0.5)


def test_logs_are_readable_and_streamable(agent, machine):
    ticker = ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]
    agent.want([web(app="ticker", command=ticker, health={"type": "none"})])
    agent.wait("ticker/0", lambda r: r["state"] == "running", "running")
    reader = Agent(PodmanDriver(HostShell(machine.dc, "home-1")), "home-1")
    deadline = time.monotonic() + 10
    while not (lines := list(reader.logs("ticker", "0"))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lines and lines[0] == "tick 0"
    stream = reader.logs("ticker", "0", follow=True, tail=1)
    first = int(next(stream).split()[1])
    later = [next(stream) for _ in range(3)]  # new lines arrive while we follow
    stream.close()
    assert later == [f"tick {first + i}" for i in (1, 2, 3)]


def test_a_removed_containers_last_lines_are_kept_on_its_machine(agent, machine, tmp_path):
    """What `vcapp logs` shows of an instance that moved or was replaced (runtime/keptlogs.py)."""
    ticker = ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"]
    agent.want([web(app="keeper", command=ticker, health={"type": "none"})])
    agent.wait("keeper/0", lambda r: r["state"] == "running", "running")
    driver = PodmanDriver(HostShell(machine.dc, "home-1"), kept_logs=tmp_path)
    time.sleep(1)
    (gone,) = [c for c in driver.list() if c.app == "keeper"]
    driver.remove(gone.name)
    agent.want([])
    (kept,) = keptlogs.listing(tmp_path, "keeper")
    assert (kept.instance, kept.release) == ("0", gone.release)
    text = keptlogs.lines(kept)
    # its whole output (the agent may have started it again while it stopped: it still wanted it)
    assert text[:5] == [f"tick {i}" for i in range(5)] and all(line.startswith("tick ") for line in text)
    assert keptlogs.lines(kept, tail=2) == text[-2:]
    assert not [c for c in driver.list() if c.name == gone.name]


def test_machine_power_off_leaves_no_container_process(machine, tmp_path_factory):
    agent = AgentOnHost(machine, "home-2", tmp_path_factory.mktemp("agent-home-2"))
    try:
        agent.want([web(app="solo", page="solo"), web(app="duo", page="duo")])
        for key in ("solo/0", "duo/0"):
            agent.wait(key, healthy, "healthy")
        infos = [json.loads(agent.podman("inspect", f"vc-{app}-0-r1").stdout)[0] for app in ("solo", "duo")]
        pids = [i["State"]["Pid"] for i in infos]
        conmon = {i["State"]["ConmonPid"] for i in infos}  # the monitors podman leaves per container
        assert all(alive(p) for p in conmon)
        assert all(open(f"/proc/{p}/cmdline").read() for p in pids)
        machine.dc.kill("home-2")
        survivors = [p for p in pids + sorted(conmon) if alive(p)]
        assert survivors == [], f"processes of home-2 survived its power-off: {survivors}"
        assert agent.proc.wait(timeout=5) is not None
    finally:
        machine.dc.revive("home-2")



def test_memory_hog_is_killed_by_its_limit_and_neighbours_keep_serving(agent, machine):
    hog = ["sh", "-c", "echo eating; x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"]
    agent.want([web(app="calm", page="calm"), web(app="hog", command=hog, memory_mb=16, health={"type": "none"})])
    calm = agent.wait("calm/0", healthy, "healthy")
    rep = agent.wait("hog/0", lambda r: r["restarts"] >= 1, "restarted after hitting its limit")
    info = json.loads(agent.podman("inspect", rep["container"]).stdout)[0]
    assert info["HostConfig"]["Memory"] == 16 * 2**20
    assert "code 137" in rep["message"] or info["State"]["OOMKilled"] or info["State"]["ExitCode"] == 137, rep
    assert get(machine, "home-1", calm["host_port"]) == "calm"
    assert agent.wait("calm/0", healthy, "still healthy")["restarts"] == 0
