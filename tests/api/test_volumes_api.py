"""Volumes through the admin API on a real etcd: what a deploy's vcapp.toml does to the app,
and requests the API must refuse without changing anything."""

from __future__ import annotations

import pytest

from tests.api.conftest import bearer
from vcapp.errors import BadRequest
from vcapp.state import apps, keys, volumes

pytestmark = pytest.mark.cluster

MOUNTS = [{"source": "data", "destination": "/data", "size_mb": 64}]


def test_mounts_in_vcapp_toml_become_the_volumes_every_instance_mounts(cluster):
    apps.create_app(cluster.store, "notes", {})
    apps.run_release(cluster.store, "notes", {"number": 1, "image": "localhost/notes:1", "config": {"mounts": MOUNTS}})
    assert apps.get_app(cluster.store, "notes")["volumes"] == MOUNTS
    # A later release without [[mounts]] leaves the app's volumes alone; an empty list removes them.
    apps.run_release(cluster.store, "notes", {"number": 2, "image": "localhost/notes:2", "config": {}})
    assert apps.get_app(cluster.store, "notes")["volumes"] == MOUNTS
    apps.run_release(cluster.store, "notes", {"number": 3, "image": "localhost/notes:3", "config": {"mounts": []}})
    assert apps.get_app(cluster.store, "notes")["volumes"] == []


def test_a_cluster_without_volumes_runs_no_storage(api, cluster):
    listed = api.get("/v1/volumes", headers=bearer(cluster.admin)).json
    assert listed == {"volumes": [], "storage": {"state": "off"}}
    assert api.get("/v1/status", headers=bearer(cluster.admin)).json["storage"] == {
        "state": "off", "volumes": 0, "replication": None, "counted": [], "error": None, "evacuated": [],
        "evacuating": {}}


@pytest.mark.parametrize("path, body, status, message", [
    ("/v1/apps/ghost/volumes", {"name": "data", "size": "1G"}, 404, "no app ghost"),
    ("/v1/apps/notes/volumes", {"name": "data", "size": "lots"}, 400, "not a size"),
    ("/v1/apps/notes/volumes", {"name": "data", "size": "8M"}, 400, "between 16M"),
    ("/v1/apps/notes/volumes", {"name": "Bad_Name", "size": "1G"}, 400, "lowercase"),
])
def test_bad_volume_requests_are_refused_and_start_nothing(api, cluster, path, body, status, message):
    apps.create_app(cluster.store, "notes", {})
    answer = api.post(path, json=body, headers=bearer(cluster.admin))
    assert answer.status_code == status and message in answer.json["error"], answer.json
    assert cluster.store.get(keys.STORAGE_ENABLED) is None  # the storage cluster was not started
    assert cluster.store.list(keys.VOLUMES) == []


def test_a_size_given_with_the_apps_volume_is_the_one_its_first_instance_creates(api, cluster):
    made = api.post("/v1/apps", json={"name": "notes", "image": "localhost/notes:1",
                                      "volumes": [{"source": "data", "destination": "/data", "size": "64M"}]},
                    headers=bearer(cluster.admin))
    assert made.status_code == 201, made.json
    assert apps.get_app(cluster.store, "notes")["volumes"] == [{"source": "data", "destination": "/data",
                                                               "size_mb": 64}]
    bad = api.post("/v1/apps", json={"name": "other", "volumes": [{"source": "data", "destination": "/data",
                                                                   "size": "lots"}]}, headers=bearer(cluster.admin))
    assert bad.status_code == 400 and "not a size" in bad.json["error"]
    assert cluster.store.get(keys.app("other")) is None


def test_a_volume_its_first_instance_made_at_the_default_size_takes_the_size_given_after(cluster):
    """`apps create --volume data:/data` then `volumes create --size 64M`: the instance may need
    the volume before the admin's request lands. Its default size yields, the instance rolls
    onto the new quota; a size someone gave only grows."""
    store = cluster.store
    apps.create_app(store, "notes", {"image": "localhost/notes:1",
                                     "volumes": [{"source": "data", "destination": "/data"}]})
    revision = apps.get_app(store, "notes").get("revision", 0)
    made = volumes.save_record(store, "notes", "data", volumes.DEFAULT_SIZE_MB, True, "the first instance",
                               first_use=True)
    assert made["size_mb"] == volumes.DEFAULT_SIZE_MB and made["default_size"]

    sized = volumes.save_record(store, "notes", "data", 64, False, "admin")
    assert sized["size_mb"] == 64 and sized["rolled"]
    assert volumes.get_volume(store, "notes", "data")["size_mb"] == 64
    assert apps.get_app(store, "notes")["revision"] == revision + 1  # the instance restarts on 64 MB
    # a first instance's own create, finishing after the admin's, leaves the admin's size alone,
    # whether its app gives no size or one smaller than the admin's
    assert volumes.save_record(store, "notes", "data", volumes.DEFAULT_SIZE_MB, True, "late",
                               first_use=True)["size_mb"] == 64
    assert volumes.save_record(store, "notes", "data", 32, False, "late", first_use=True)["size_mb"] == 64

    with pytest.raises(BadRequest, match="can grow, not shrink"):
        volumes.check_request(store, "notes", "data", 32)
    assert volumes.get_volume(store, "notes", "data")["size_mb"] == 64
    assert apps.get_app(store, "notes")["revision"] == revision + 1
    assert not volumes.save_record(store, "notes", "data", 64, False, "admin").get("rolled")  # the same size: no roll
    assert apps.get_app(store, "notes")["revision"] == revision + 1
