"""Joining machines through the API: every bad token is refused with its reason and leaves no
trace; a good one admits the machine; the 10-machine limit holds; token listings hold no secret."""

from __future__ import annotations

import time

import pytest

import base64

from vcapp import keys, tokens
from vcapp.api import ApiConfig, create_app
from tests.api.conftest import CLUSTER_KEY, bearer, found

pytestmark = pytest.mark.cluster


def machine(name: str, site: str = "office", n: int = 2) -> dict:
    return {"name": name, "site": site, "addr": f"10.0.1.{n}", "api_url": f"http://10.0.1.{n}:7180",
            "resources": {"cpus": 2, "memory_mb": 4000, "free_memory_mb": 1000,
                          "disk_mb": 50_000, "free_disk_mb": 20_000}, "version": "0.1.0"}


def join(api, token: str, name: str, n: int = 2):
    return api.post("/v1/join", json={"token": token, "node": machine(name, n=n)})


def new_join_token(api, cluster, **body) -> dict:
    response = api.post("/v1/tokens/join", json=body, headers=bearer(cluster.admin))
    assert response.status_code == 201, response.json
    return response.json


def assert_refused(api, cluster, token: str, name: str, status: int, message: str) -> None:
    nodes_before = cluster.store.count(keys.NODES)
    response = join(api, token, name)
    assert response.status_code == status, response.json
    assert message in response.json["error"]
    assert "cluster_key" not in response.json
    assert cluster.store.get(keys.node(name)) is None
    assert cluster.store.count(keys.NODES) == nodes_before
    listed = api.get("/v1/nodes", headers=bearer(cluster.admin)).json["nodes"]
    assert name not in {n["name"] for n in listed}


def test_a_good_join_is_201_and_the_machine_is_listed(api, cluster):
    response = join(api, cluster.join, "office-1")
    assert response.status_code == 201, response.json
    answer = response.json
    assert answer["cluster"] == {"name": "acme", "id": answer["cluster"]["id"], "domain": "apps.example.com",
                                 "edge": "edge.example.com:443"}
    assert answer["node"]["site"] == "office" and answer["node"]["cpus"] == 2
    assert answer["endpoints"] == [cluster.etcd_url]
    assert base64.b64decode(answer["cluster_key"]) == CLUSTER_KEY
    listed = {n["name"]: n for n in api.get("/v1/nodes", headers=bearer(cluster.admin)).json["nodes"]}
    assert set(listed) == {"home-1", "office-1"}
    assert listed["office-1"]["up"] is False  # no daemon keeps its liveness key alive in this test
    kinds = [e["kind"] for e in api.get("/v1/events", headers=bearer(cluster.admin)).json["events"]]
    assert kinds[-1] == "node.joined"


def test_wrong_and_garbage_tokens_are_refused(api, cluster):
    good = tokens.parse_join_token(cluster.join)
    wrong = str(tokens.JoinToken(good.cluster, good.api_urls, good.id, "C" * 43))
    assert_refused(api, cluster, wrong, "office-1", 401, "join token not recognised")
    other = str(tokens.JoinToken("other", good.api_urls, good.id, good.secret))
    assert_refused(api, cluster, other, "office-1", 401, "is for cluster 'other', not 'acme'")
    assert_refused(api, cluster, "hello", "office-1", 401, "not a vcapp join token")
    assert_refused(api, cluster, cluster.admin, "office-1", 401, "not a vcapp join token")


def test_an_expired_token_is_refused(api, cluster):
    token = new_join_token(api, cluster, expires="1s")
    assert token["expires_at"] - token["created_at"] == pytest.approx(1, abs=0.01)
    time.sleep(1.1)
    assert_refused(api, cluster, token["token"], "office-1", 401, f"join token {token['id']} expired at")


def test_a_revoked_token_is_refused(api, cluster):
    token = new_join_token(api, cluster, name="office")
    assert api.delete(f"/v1/tokens/join/{token['id']}", headers=bearer(cluster.admin)).status_code == 200
    assert_refused(api, cluster, token["token"], "office-1", 401, f"join token {token['id']} was revoked")


def test_a_used_up_token_is_refused(api, cluster):
    token = new_join_token(api, cluster, uses=1)
    assert join(api, token["token"], "office-1").status_code == 201
    assert_refused(api, cluster, token["token"], "office-2", 401, "is used up (1 of 1 uses)")
    listed = {t["id"]: t for t in api.get("/v1/tokens/join", headers=bearer(cluster.admin)).json["tokens"]}
    assert listed[token["id"]]["uses"] == 1


def test_a_second_machine_with_an_existing_name_is_refused(api, cluster):
    assert join(api, cluster.join, "office-1").status_code == 201
    record = cluster.store.get(keys.node("office-1"))
    response = join(api, cluster.join, "office-1", n=99)
    assert response.status_code == 409
    assert "a machine named 'office-1' is already in the cluster" in response.json["error"]
    assert cluster.store.get(keys.node("office-1")).mod_revision == record.mod_revision
    assert_refused(api, cluster, cluster.join, "Bad_Name", 400, "use lowercase letters")


def test_a_full_cluster_refuses_the_next_machine_small_limit(api, etcd_url):
    cluster = found(etcd_url, max_nodes=2)
    assert join(api, cluster.join, "office-1").status_code == 201
    assert_refused(api, cluster, cluster.join, "office-2", 409, "cluster is full: 2 machines")


def test_the_eleventh_machine_is_refused(api, cluster):
    for n in range(2, 11):
        assert join(api, cluster.join, f"m-{n}", n=n).status_code == 201
    assert cluster.store.count(keys.NODES) == 10
    assert_refused(api, cluster, cluster.join, "m-11", 409, "cluster is full: 10 machines")
    status = api.get("/v1/status", headers=bearer(cluster.admin)).json
    assert status["summary"]["nodes"] == 10


def test_token_listings_never_show_secrets_or_hashes(api, cluster):
    join_token = new_join_token(api, cluster, name="lab", expires="2d", uses=3)
    admin_token = api.post("/v1/tokens/admin", json={"name": "ci"}, headers=bearer(cluster.admin)).json
    secrets = [tokens.parse_join_token(join_token["token"]).secret, tokens.parse_admin_token(admin_token["token"]).secret,
               tokens.parse_join_token(cluster.join).secret, tokens.parse_admin_token(cluster.admin).secret]
    for path in ("/v1/tokens/join", "/v1/tokens/admin"):
        response = api.get(path, headers=bearer(cluster.admin))
        text = response.get_data(as_text=True)
        for secret in secrets:
            assert secret not in text
            assert tokens.hash_secret(secret) not in text
        for record in response.json["tokens"]:
            assert "hash" not in record and "token" not in record and "secret" not in record
    listed = {t["id"]: t for t in api.get("/v1/tokens/join", headers=bearer(cluster.admin)).json["tokens"]}
    assert listed[join_token["id"]]["name"] == "lab" and listed[join_token["id"]]["max_uses"] == 3
    assert listed[join_token["id"]]["expires_at"] - listed[join_token["id"]]["created_at"] == pytest.approx(2 * 86400, abs=1)
    assert join_token["join_command"] == f"vcapp node join {join_token['token']}"


def test_a_new_admin_token_works_and_the_api_knows_who_is_calling(api, cluster):
    created = api.post("/v1/tokens/admin", json={"name": "alice-laptop"}, headers=bearer(cluster.admin)).json
    status = api.get("/v1/status", headers=bearer(created["token"])).json
    assert status["admin"] == "alice-laptop"
    listed = api.get("/v1/tokens/admin", headers=bearer(created["token"])).json
    assert {t["name"] for t in listed["tokens"]} == {"initial", "alice-laptop"}


def test_removing_a_machine_forgets_it(api, cluster):
    assert join(api, cluster.join, "office-1").status_code == 201
    response = api.delete("/v1/nodes/office-1", headers=bearer(cluster.admin))
    assert response.status_code == 200
    assert response.json["removed"] == "office-1"
    assert cluster.store.get(keys.node("office-1")) is None
    names = {n["name"] for n in api.get("/v1/nodes", headers=bearer(cluster.admin)).json["nodes"]}
    assert names == {"home-1"}
    # the name is free again: the same machine can come back with a join token
    assert join(api, cluster.join, "office-1").status_code == 201


def test_a_machine_without_the_cluster_key_refuses_joins_before_admitting(etcd_url, cluster):
    keyless = create_app(ApiConfig.for_endpoints([etcd_url], "home-1")).test_client()
    assert_refused(keyless, cluster, cluster.join, "office-1", 503, "no cluster key")
    token_id = tokens.parse_join_token(cluster.join).id
    assert cluster.store.value(keys.join_token(token_id))["uses"] == 0
