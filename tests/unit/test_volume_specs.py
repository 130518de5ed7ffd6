"""Pure checks of how volumes travel from an app spec to `podman run`."""

from __future__ import annotations

import pytest

from runtime.podman import PodmanDriver, PodmanError
from runtime.spec import InstanceSpec, SpecError
from vcapp.errors import BadRequest
from vcapp.state import apps

ASSIGNMENT = {"app": "notes", "instance": "0", "release": 2, "image": "localhost/notes:2", "port": 8080,
              "volumes": [{"source": "data", "destination": "/data", "size_mb": 64}]}


class NoShell:
    def run(self, argv):  # pragma: no cover - the checks below never reach podman
        raise AssertionError(f"podman must not run: {argv}")


def test_the_volume_is_bind_mounted_from_the_host_path_the_storage_gave():
    spec = InstanceSpec.from_assignment(ASSIGNMENT)
    args = PodmanDriver(NoShell()).run_args(spec, 20001, "/tmp/env", {"data": "/var/lib/vcapp/volumes/notes/data"})
    assert args[args.index("-v") + 1] == "/var/lib/vcapp/volumes/notes/data:/data"


def test_an_instance_never_starts_on_a_volume_that_was_not_mounted():
    spec = InstanceSpec.from_assignment(ASSIGNMENT)
    with pytest.raises(PodmanError, match="not mounted"):
        PodmanDriver(NoShell()).run(spec, 20001, {})


def test_a_volume_entry_without_an_absolute_destination_is_refused():
    with pytest.raises(SpecError, match="absolute destination"):
        InstanceSpec.from_assignment(dict(ASSIGNMENT, volumes=[{"source": "data", "destination": "data"}]))


def test_apps_with_volumes_run_one_instance_and_name_each_volume_once():
    with pytest.raises(BadRequest, match="1 instance"):
        apps.new_spec("notes", {"count": 2, "volumes": [{"source": "data", "destination": "/data"}]})
    with pytest.raises(BadRequest, match="twice"):
        apps.new_spec("notes", {"volumes": [{"source": "data", "destination": "/a"},
                                            {"source": "data", "destination": "/b"}]})
    spec = apps.new_spec("notes", {"volumes": [{"source": "data", "destination": "/data"}]})
    assert spec["volumes"] == [{"source": "data", "destination": "/data"}]


@pytest.mark.parametrize("text, mb", [("64M", 64), ("1G", 1024), ("1.5GiB", 1536), (512, 512)])
def test_volume_sizes(text, mb):
    assert apps.parse_volume_size(text) == mb


def test_a_size_that_is_not_one_is_refused():
    with pytest.raises(BadRequest, match="not a size"):
        apps.parse_volume_size("lots")


def test_degraded_storage_is_a_warning_until_it_heals():
    from vcapp.views import warnings

    def found(state):
        return warnings.compute(warnings.Inputs([], [], {}, {}, 0.0, state))

    assert found(None) == {}
    warned = found({"state": "degraded", "code": "001", "live": 2})
    assert warned["storage"]["severity"] == "warning" and "only 2 machine(s) up" in warned["storage"]["message"]
    assert found({"state": "healthy", "code": "002", "live": 3}) == {}


def test_a_filer_first_asks_its_own_etcd_member_else_a_live_one():
    from vcapp.state.volumes import etcd_order

    members = ["http://10.0.0.3:2379", "http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    assert etcd_order(members, "10.0.0.2", set()) == ["10.0.0.2:2379", "10.0.0.1:2379", "10.0.0.3:2379"]
    # A machine without a member of its own, the first member dead: a live one goes first.
    assert etcd_order(members, "10.0.0.9", {"10.0.0.2", "10.0.0.3"})[0] == "10.0.0.2:2379"
