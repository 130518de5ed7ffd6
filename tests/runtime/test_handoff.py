"""The agent's order of work when a container leaves (issue 16): the instance's new report is
handed off (the routers switch) before the old container is told to stop, and the stop (SIGTERM,
drain, SIGKILL) runs beside the agent's next passes, which neither restart nor remove it again.

Pure logic with a recording fake of the podman driver; tests/ingress/test_edge_cluster.py
checks the same on real machines with an open-loop client through the edge."""

from __future__ import annotations

import threading
import time
from dataclasses import replace as copy

from runtime.supervisor import Agent
from runtime.podman import Container, named_before
from runtime.spec import HealthCheck, InstanceSpec, SpecError

import pytest


class FakeDriver:
    """Containers in a dict; `retire` blocks until the test lets it finish (a drain), under the
    name `rename` gave the container."""

    def __init__(self):
        self.containers: dict[str, Container] = {}
        self.calls: list[tuple[str, str]] = []
        self.drained = threading.Event()
        self.retired = threading.Event()

    def list(self) -> list[Container]:
        return list(self.containers.values())

    def run(self, spec: InstanceSpec, port, binds=None) -> None:
        self.calls.append(("run", spec.container_name))
        self.containers[spec.container_name] = Container(
            id=f"id-{spec.container_name}", name=spec.container_name, app=spec.app, instance=spec.instance,
            release=spec.release, state="running", exit_code=0, started_at=1.0, exited_at=0.0, host_port=port,
            pid=0)

    def is_running(self, name: str) -> bool:
        return name in self.containers

    def pick_host_port(self, taken: set[int]) -> int:
        return next(p for p in range(20000, 30000) if p not in taken)

    def remove(self, name: str) -> None:
        self.calls.append(("remove", name))
        self.containers.pop(name, None)

    def rename(self, name: str, new_name: str) -> None:
        self.calls.append(("rename", name))
        self.containers[new_name] = copy(self.containers.pop(name), name=new_name)

    def retire(self, name: str) -> None:
        self.calls.append(("stop", named_before(name)))  # in the names the instance served under
        self.drained.wait(5)
        self.containers.pop(name, None)
        self.retired.set()

    def remove_unused_networks(self, apps) -> None:
        self.calls.append(("sweep", ",".join(sorted(apps))))


def acts(driver: FakeDriver) -> list[tuple[str, str]]:
    """What the driver was told to do to containers (network sweeps left out)."""
    return [c for c in driver.calls if c[0] != "sweep"]


def spec(release: str, **kw) -> InstanceSpec:
    return InstanceSpec(app="blog", instance="0", release=release, image="img", port=8080,
                        health=HealthCheck(kind="none"), **kw)


@pytest.fixture
def agent(tmp_path):
    driver = FakeDriver()
    handoffs: list[tuple[str, dict | None, list, int | None]] = []
    a = Agent(driver, "home-1", tmp_path / "book.json",
              handoff=lambda key, rep, port: handoffs.append((key, rep, list(driver.calls), port)))
    a.handoffs = handoffs
    return a


def test_a_new_release_is_handed_off_healthy_before_the_old_one_is_told_to_stop(agent):
    driver = agent.driver
    agent.step([spec("1")])
    old_port = driver.containers["vc-blog-0-r1"].host_port
    reports = agent.step([spec("2")])
    [(key, rep, calls_then, leaving)] = agent.handoffs
    assert key == "blog/0" and leaving is None  # the instance stays: the new container serves here
    assert rep["release"] == "2" and rep["state"] == "running" and rep["health"] == "healthy"
    assert rep["host_port"] != old_port
    assert ("stop", "vc-blog-0-r1") not in calls_then, "the old container was stopped before the routers switched"
    assert driver.retired.wait(0) is False  # draining: still there, beside the new one, renamed
    assert {named_before(n) for n in driver.containers} == {"vc-blog-0-r1", "vc-blog-0-r2"}
    assert "vc-blog-0-r1" not in driver.containers
    assert reports["blog/0"]["release"] == "2" and reports["blog/0"]["health"] == "healthy"
    # passes during the drain leave the retiring container alone
    agent.step([spec("2")])
    assert [c for c in driver.calls if c[1] == "vc-blog-0-r1"] == [("run", "vc-blog-0-r1"), ("rename", "vc-blog-0-r1"),
                                                                 ("stop", "vc-blog-0-r1")]
    driver.drained.set()
    assert driver.retired.wait(5)
    agent.step([spec("2")])
    assert set(driver.containers) == {"vc-blog-0-r2"}


def test_an_instance_leaving_the_machine_is_unpublished_before_it_stops(agent):
    driver = agent.driver
    agent.step([spec("1")])
    old_port = driver.containers["vc-blog-0-r1"].host_port
    agent.step([])
    [(key, rep, calls_then, leaving)] = agent.handoffs
    assert key == "blog/0" and rep is None
    assert leaving == old_port  # its machine's hop keeps it for the routers not switched yet
    assert ("stop", "vc-blog-0-r1") not in calls_then
    driver.drained.set()
    assert driver.retired.wait(5)
    assert acts(driver)[-1] == ("stop", "vc-blog-0-r1")


def test_a_stopped_container_is_removed_without_a_handoff(agent):
    driver = agent.driver
    agent.step([spec("1")])
    driver.containers["vc-blog-0-r1"] = copy(driver.containers["vc-blog-0-r1"], state="exited")
    agent.step([])
    assert agent.handoffs == [] and acts(driver)[-1] == ("remove", "vc-blog-0-r1")


def test_the_kill_timeout_comes_from_the_assignment_and_absurd_ones_are_refused():
    rec = {"app": "blog", "instance": "0", "image": "img", "release": "1"}
    assert InstanceSpec.from_assignment(rec).kill_timeout_s == 10
    assert InstanceSpec.from_assignment(dict(rec, kill_timeout=30)).kill_timeout_s == 30
    for bad in (0, 301, "10", 2.5, True):
        with pytest.raises(SpecError, match="kill_timeout"):
            InstanceSpec.from_assignment(dict(rec, kill_timeout=bad))


def test_an_instance_handed_over_keeps_serving_here_until_released(agent):
    driver = agent.driver
    agent.step([spec("1")])
    for _ in range(2):  # its successor elsewhere is not healthy yet
        reports = agent.step([], hold={"blog/0"})
        assert reports["blog/0"]["state"] == "running" and reports["blog/0"]["release"] == "1"
    assert agent.handoffs == [] and set(driver.containers) == {"vc-blog-0-r1"}
    assert agent.step([]) == {}  # released: unpublished, then drained
    assert agent.handoffs[0][:2] == ("blog/0", None)
    driver.drained.set()
    assert driver.retired.wait(5)


def test_a_worker_without_a_port_is_replaced_without_asking_the_routers(agent):
    driver = agent.driver
    worker = lambda release: InstanceSpec(app="blog", instance="worker-0", release=release,  # noqa: E731
                                          image="img", health=HealthCheck(kind="none"))
    agent.step([worker("1")])
    agent.step([worker("2")])
    assert agent.handoffs == []
    driver.drained.set()
    assert driver.retired.wait(5)
    assert set(driver.containers) == {"vc-blog-worker-0-r2"}


def test_the_network_of_an_app_whose_last_container_drained_is_tidied_next_pass(agent):
    driver = agent.driver
    agent.step([spec("1")])
    agent.step([])  # blog leaves: its container drains on its own thread
    driver.drained.set()
    assert driver.retired.wait(5)
    for _ in range(50):  # the thread marks the sweep due just after it removed the container
        if not agent.swept:
            break
        time.sleep(0.01)
    agent.step([])
    assert driver.calls[-1] == ("sweep", "")  # blog is in no app in use: its network can go
