"""Joining machines through the API: every bad token is refused with its reason and leaves no
trace; a good one admits the machine; a token admits one machine unless made for more; the
10-machine limit holds; the join travels sealed; token listings hold no secret."""

from __future__ import annotations

import base64
import threading
import time

import pytest

from tests.api.conftest import CLUSTER_KEY, JOIN_KEY, JoinAnswer, bearer, client_post, found, sealed_join
from vcapp import etcdtls, joinbox, tokens
from vcapp.api.app import ApiConfig, create_app
from vcapp.state import keys

pytestmark = pytest.mark.cluster


def machine(name: str, site: str = "office", n: int = 2) -> dict:
    return {"name": name, "site": site, "addr": f"10.0.1.{n}", "api_url": f"http://10.0.1.{n}:7180",
            "resources": {"cpus": 2, "memory_mb": 4000, "free_memory_mb": 1000,
                          "disk_mb": 50_000, "free_disk_mb": 20_000}, "version": "0.1.0"}


def join(api, token: str, name: str, n: int = 2) -> JoinAnswer:
    return sealed_join(client_post(api), token, machine(name, n=n))


def new_join_token(api, cluster, **body) -> dict:
    response = api.post("/v1/tokens/join", json=body, headers=bearer(cluster.admin))
    assert response.status_code == 201, response.json
    return response.json


def assert_refused(api, cluster, token: str, name: str, status: int, message: str) -> None:
    nodes_before = cluster.store.count(keys.NODES)
    response = join(api, token, name)
    assert response.status_code == status, response.json
    assert message in response.json["error"]
    assert "cluster_key" not in response.json and b"cluster_key" not in response.wire
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


def test_a_new_join_token_admits_one_machine_unless_made_for_more(api, cluster):
    single = new_join_token(api, cluster)
    assert single["max_uses"] == 1
    assert join(api, single["token"], "office-1").status_code == 201
    assert_refused(api, cluster, single["token"], "office-2", 401, "is used up (1 of 1 uses)")
    three = new_join_token(api, cluster, uses=3)
    for n in range(3):
        assert join(api, three["token"], f"lab-{n}", n=10 + n).status_code == 201
    assert_refused(api, cluster, three["token"], "lab-3", 401, "is used up (3 of 3 uses)")
    many = new_join_token(api, cluster, uses=0)
    assert join(api, many["token"], "lab-9", n=19).status_code == 201  # 0: any number until it expires


def test_two_machines_racing_for_a_single_use_token_cannot_both_join(etcd_url, cluster):
    """The token check and its use count are one etcd transaction: of machines sending their
    join at the same moment, one gets in; the others are refused and leave nothing."""
    admin = create_app(ApiConfig.for_endpoints([etcd_url], "home-1", lambda: CLUSTER_KEY)).test_client()
    token = new_join_token(admin, cluster)["token"]
    answers: dict[str, JoinAnswer] = {}
    broken: dict[str, BaseException] = {}
    start = threading.Barrier(4, timeout=30)
    # One API per machine (made here: the race is between the joins, not the app setups).
    clients = [create_app(ApiConfig.for_endpoints([etcd_url], "home-1", lambda: CLUSTER_KEY)).test_client()
               for _ in range(4)]

    def race(name: str, n: int) -> None:
        try:
            start.wait()
            answers[name] = join(clients[n - 20], token, name, n=n)
        except BaseException as e:  # a thread's exception would otherwise vanish (or hang the barrier)
            broken[name] = e

    threads = [threading.Thread(target=race, args=(f"racer-{n}", 20 + n)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not broken and len(answers) == 4, broken
    won = [name for name, a in answers.items() if a.status_code == 201]
    assert len(won) == 1, {name: (a.status_code, a.json) for name, a in answers.items()}
    for name, a in answers.items():
        if name not in won:
            assert a.status_code in (401, 409) and ("used up" in a.json["error"] or "run the join again" in a.json["error"])
            assert cluster.store.get(keys.node(name)) is None
    assert cluster.store.value(keys.join_token(tokens.parse_join_token(token).id))["uses"] == 1


def test_the_join_crosses_the_wire_sealed(api, cluster):
    """Neither the join token nor the cluster key nor the mesh credential is readable in the
    bodies on the wire; the answer opens only with the key of the machine that asked, and an
    altered request is refused without admitting anyone."""
    sealed = joinbox.seal_request(JOIN_KEY, {"token": cluster.join, "node": machine("office-1"),
                                             "csr": etcdtls.make_csr(etcdtls.new_key(), "office-1")})
    request_wire = str(sealed.body)
    assert tokens.parse_join_token(cluster.join).secret not in request_wire
    response = api.post("/v1/join", json=sealed.body)
    assert response.status_code == 201, response.json
    wire = response.get_data()
    assert set(response.json) == {"box"}
    key_b64 = base64.b64encode(CLUSTER_KEY)
    assert key_b64 not in wire and CLUSTER_KEY not in wire and b"cluster_key" not in wire
    answer = sealed.open_answer(response.json)
    assert base64.b64decode(answer["cluster_key"]) == CLUSTER_KEY
    other = joinbox.seal_request(JOIN_KEY, {"token": cluster.join, "node": machine("office-2", n=3)})
    with pytest.raises(joinbox.SealError):
        other.open_answer(response.json)  # another machine's key does not open it
    box = bytearray(base64.b64decode(other.body["box"]))
    box[-1] ^= 1
    tampered = {"key": other.body["key"], "box": base64.b64encode(bytes(box)).decode()}
    refused = api.post("/v1/join", json=tampered)
    assert refused.status_code == 400 and "altered on the way" in refused.json["error"]
    clear = api.post("/v1/join", json={"token": cluster.join, "node": machine("office-2", n=3)})
    assert clear.status_code == 400 and "this join is not sealed" in clear.json["error"]
    assert cluster.store.get(keys.node("office-2")) is None


def test_the_same_join_again_is_answered_again_and_uses_the_token_once(api, cluster):
    """A relay that gave up waiting, or a dropped connection, loses the answer of a join the
    cluster did admit: the joiner sends the same request again and must get its answer, not
    "already in the cluster" (that left machines half-joined under load)."""
    single = new_join_token(api, cluster)
    sealed = joinbox.seal_request(JOIN_KEY, {"token": single["token"], "node": machine("office-7", n=7),
                                             "csr": etcdtls.make_csr(etcdtls.new_key(), "office-7")})
    first = api.post("/v1/join", json=sealed.body)
    again = api.post("/v1/join", json=sealed.body)
    assert (first.status_code, again.status_code) == (201, 201), again.json
    one, two = sealed.open_answer(first.json), sealed.open_answer(again.json)
    assert one["node"]["name"] == two["node"]["name"] == "office-7" and one["node"]["addr"] == two["node"]["addr"]
    assert cluster.store.value(keys.join_token(tokens.parse_join_token(single["token"]).id))["uses"] == 1
    joined = [e for e in api.get("/v1/events", headers=bearer(cluster.admin)).json.get("events", [])
              if e.get("kind") == "node.joined" and e.get("node") == "office-7"]
    assert len(joined) == 1


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
    token = new_join_token(api, cluster, uses=5)["token"]
    assert join(api, token, "office-1").status_code == 201
    assert_refused(api, cluster, token, "office-2", 409, "cluster is full: 2 machines")


def test_the_eleventh_machine_is_refused(api, cluster):
    for n in range(2, 11):  # the founding token admits the rest of the cluster: 9 machines
        assert join(api, cluster.join, f"m-{n}", n=n).status_code == 201
    assert cluster.store.count(keys.NODES) == 10
    assert_refused(api, cluster, cluster.join, "m-11", 401, "is used up (9 of 9 uses)")
    spare = new_join_token(api, cluster, uses=3)["token"]
    assert_refused(api, cluster, spare, "m-11", 409, "cluster is full: 10 machines; remove one first")
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
    assert {t["name"] for t in listed["tokens"]} == {"admin", "alice-laptop"}


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
