"""Volumes through the admin API on a real etcd: what a deploy's vcapp.toml does to the app,
and requests the API must refuse without changing anything."""

from __future__ import annotations

import pytest

from tests.api.conftest import bearer
from vcapp.state import apps, keys

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
