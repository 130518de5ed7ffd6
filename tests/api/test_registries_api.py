"""Registry mirrors and credentials over the admin API (vcapp/state/registries.py)."""

from __future__ import annotations

import pytest

from tests.api.conftest import CLUSTER_KEY, bearer
from vcapp.machine import derive
from vcapp.state import keys, registries, secrets

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("node_dir")]  # seals with its cluster key


def test_a_registry_is_added_listed_without_its_password_sealed_in_etcd_and_removed(api, cluster):
    auth = bearer(cluster.admin)
    assert api.get("/v1/registries").status_code == 401
    assert api.put("/v1/registries/ghcr.io", json={"username": "u", "password": "p"}).status_code == 401
    assert api.get("/v1/registries", headers=auth).json == {"registries": []}

    body = {"mirror": "https://mirror.corp.test/ghcr", "username": "robot", "password": "tok-3f9a"}
    answer = api.put("/v1/registries/GHCR.io", json=body, headers=auth)
    assert answer.status_code == 200, answer.json
    assert answer.json["host"] == "ghcr.io" and answer.json["password"] is True
    [listed] = api.get("/v1/registries", headers=auth).json["registries"]
    assert {k: listed[k] for k in ("host", "mirror", "insecure", "username", "password")} == {
        "host": "ghcr.io", "mirror": "mirror.corp.test/ghcr", "insecure": False, "username": "robot",
        "password": True}
    assert "tok-3f9a" not in api.get("/v1/registries", headers=auth).get_data(as_text=True)
    stored = cluster.store.value(keys.registry("ghcr.io"))
    assert "tok-3f9a" not in str(stored)
    assert secrets.unseal(stored["password"], "test", derive(CLUSTER_KEY, "secrets")) == "tok-3f9a"
    creds = registries.credentials(registries.records(cluster.store))
    assert creds["ghcr.io"].password == creds["mirror.corp.test/ghcr"].password == "tok-3f9a"

    assert api.delete("/v1/registries/ghcr.io", headers=auth).status_code == 200
    assert cluster.store.get(keys.registry("ghcr.io")) is None
    gone = api.delete("/v1/registries/ghcr.io", headers=auth)
    assert gone.status_code == 404 and "no settings for registry ghcr.io" in gone.json["error"]


@pytest.mark.parametrize("host, body, message", [
    ("docker.io%0a", {"mirror": "http://m.lan:5000"}, "is not a host name"),
    ("docker_io", {"mirror": "http://m.lan:5000"}, "is not a host name"),
    ("docker.io", {"mirror": "http://m.lan:5000\r\n"}, "without spaces or control characters"),
    ("docker.io", {"mirror": "ftp://m.lan"}, "is not a registry URL"),
    ("docker.io", {"mirror": "http://m.lan", "insecure": "yes"}, "insecure: true or false"),
    ("docker.io", {"username": "u"}, "give both a username and a password"),
    ("docker.io", {"username": "u", "password": "a\nb"}, "without control characters"),
    ("docker.io", {"username": "u", "password": "x" * 5000}, "at most 4096"),
    ("docker.io", {}, "there is nothing to set"),
    ("docker.io", {"mirror": "http://m.lan", "token": "x"}, "unknown field 'token'"),
])
def test_bad_registry_input_is_a_400_and_changes_nothing(api, cluster, host, body, message):
    revision = cluster.store.revision()
    answer = api.put(f"/v1/registries/{host}", json=body, headers=bearer(cluster.admin))
    assert answer.status_code == 400 and message in answer.json["error"], answer.json
    assert cluster.store.revision() == revision
