"""Choosing the instance `vcapp exec` runs in, and its podman argv (vcapp/deploy/instance_exec.py)."""

import pytest

from runtime.podman import Container
from vcapp.deploy.instance_exec import ExecFailed, choose_instance, exec_args, running_container
from vcapp.state import apps

pytestmark = pytest.mark.unit


def container(instance: str, state: str, app: str = "blog", release: str = "1.0", started: float = 1.0) -> Container:
    return Container(id="c" + instance, name=f"vc-{app}-{instance}-{state}-{release}", app=app, instance=instance,
                     release=release, state=state, exit_code=0, started_at=started, exited_at=0.0, host_port=None,
                     pid=0)


def test_the_first_web_instance_by_default_then_any_type():
    assert choose_instance({"worker-0": "b", "10": "c", "2": "a"}, None, "blog") == ("2", "a")
    assert choose_instance({"worker-1": "b", "clock-0": "c"}, None, "blog") == ("clock-0", "c")
    assert choose_instance({"worker-1": "b", "2": "a"}, "worker-1", "blog") == ("worker-1", "b")


def test_an_unknown_instance_or_none_at_all_says_what_exists():
    with pytest.raises(ExecFailed, match=r"no instance '7' \(it has: 0, worker-0\); `vcapp ps blog`"):
        choose_instance({"worker-0": "b", "0": "a"}, "7", "blog")
    with pytest.raises(ExecFailed, match="no instance on any machine"):
        choose_instance({}, None, "blog")


def test_only_a_running_container_of_that_instance_is_used():
    found = running_container([container("0", "exited"), container("0", "running", "other"),
                               container("0", "running")], "blog", "0", "home-1")
    assert found.name == "vc-blog-0-running-1.0"
    with pytest.raises(ExecFailed, match="not running on home-1"):
        running_container([container("0", "exited")], "blog", "0", "home-1")


def test_while_a_release_replaces_another_the_assigned_releases_container_is_used():
    draining, new = container("0", "running", release="1.0", started=5.0), container("0", "running", release="1.1")
    assert running_container([draining, new], "blog", "0", "home-1", "1.1") is new
    assert running_container([new, draining], "blog", "0", "home-1", "1.0") is draining
    # The assignment names a release not started yet: the one started last, not the first listed.
    assert running_container([new, draining], "blog", "0", "home-1", "1.2") is draining


def test_the_command_goes_to_the_containers_shell_as_one_argument():
    assert exec_args("vc-blog-0", "ls; id") == ["podman", "exec", "vc-blog-0", "sh", "-c", "ls; id"]


def test_instance_names_are_whole_web_slots_or_type_slots():
    for good in ("0", "12", "worker-0", "clock_x-3"):
        assert apps.INSTANCE.fullmatch(good)
    for bad in ("", "-1", "worker", "Worker-0", "0\n", "../0", "worker-0-"):
        assert not apps.INSTANCE.fullmatch(bad)
