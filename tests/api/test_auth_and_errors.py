"""The admin API refuses what it must, with messages a person can act on, and changes nothing."""

from __future__ import annotations

import base64
import json
import time

import pytest

from tests.api.conftest import bearer
from vcapp.api.app import ApiConfig, create_app
from vcapp.state import keys
from vcapp.state.store import Store

pytestmark = pytest.mark.cluster

WRONG_SECRET = "vcadm_0badc0de_" + "A" * 43


def mutations(cluster):
    """Requests that would change the cluster if they were let through."""
    return [
        ("post", "/v1/tokens/join", {"expires": "1h"}),
        ("post", "/v1/tokens/admin", {"name": "intruder"}),
        ("delete", "/v1/nodes/home-1", None),
        ("delete", f"/v1/tokens/admin/{cluster.admin.split('_')[1]}", None),
    ]


@pytest.mark.parametrize("header, reason", [
    (None, "no admin token"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "malformed Authorization header"),
    ({"Authorization": "Bearer "}, "malformed Authorization header"),
    (bearer("not-a-token"), "not a vcapp admin token"),
    (bearer(WRONG_SECRET), "admin token not recognised"),
])
def test_bad_credentials_are_refused_and_change_nothing(api, cluster, header, reason):
    revision = cluster.store.revision()
    for method, path, body in mutations(cluster) + [("get", "/v1/nodes", None), ("get", "/openapi.json", None)]:
        response = getattr(api, method)(path, json=body, headers=header or {})
        assert response.status_code == 401, (path, response.json)
        assert reason in response.json["error"]
    assert cluster.store.revision() == revision
    assert cluster.store.get(keys.node("home-1")) is not None


def test_a_token_with_the_right_id_but_wrong_secret_is_refused(api, cluster):
    token_id = cluster.admin.split("_")[1]
    forged = f"vcadm_{token_id}_" + "B" * 43
    revision = cluster.store.revision()
    response = api.post("/v1/tokens/admin", json={"name": "forged"}, headers=bearer(forged))
    assert response.status_code == 401
    assert "not recognised" in response.json["error"]
    assert cluster.store.revision() == revision


def test_a_revoked_admin_token_is_refused_with_the_reason(api, cluster):
    second = api.post("/v1/tokens/admin", json={"name": "bob"}, headers=bearer(cluster.admin)).json
    assert api.get("/v1/nodes", headers=bearer(second["token"])).status_code == 200
    assert api.delete(f"/v1/tokens/admin/{second['id']}", headers=bearer(cluster.admin)).status_code == 200
    revision = cluster.store.revision()
    for method, path, body in mutations(cluster):
        response = getattr(api, method)(path, json=body, headers=bearer(second["token"]))
        assert response.status_code == 401
        assert f"admin token {second['id']} (bob) was revoked" in response.json["error"]
    assert cluster.store.revision() == revision


def test_the_last_valid_admin_token_cannot_be_revoked(api, cluster):
    token_id = cluster.admin.split("_")[1]
    response = api.delete(f"/v1/tokens/admin/{token_id}", headers=bearer(cluster.admin))
    assert response.status_code == 409
    assert "last valid one" in response.json["error"]
    assert api.get("/v1/nodes", headers=bearer(cluster.admin)).status_code == 200


@pytest.mark.parametrize("path", ["/v1/tokens/join", "/v1/tokens/admin", "/v1/join"])
@pytest.mark.parametrize("raw", ['{"name": "x",', "[1, 2]", "\xff\xfe"])
def test_malformed_json_is_a_400_and_changes_nothing(api, cluster, path, raw):
    revision = cluster.store.revision()
    response = api.post(path, data=raw.encode("latin-1"), content_type="application/json",
                        headers=bearer(cluster.admin))
    assert response.status_code == 400
    assert ("request body is not valid JSON" in response.json["error"]
            or "must be a JSON object" in response.json["error"])
    assert cluster.store.revision() == revision


def test_invalid_fields_are_refused_with_what_would_be_valid(api, cluster):
    revision = cluster.store.revision()
    cases = [("/v1/tokens/join", {"expires": "3 fortnights"}, "is not a duration"),
             ("/v1/tokens/join", {"uses": -1}, "uses: must be between 0"),
             ("/v1/tokens/admin", {}, "give the token a name"),
             ("/v1/join", {"node": {"name": "x"}}, "this join is not sealed")]
    for path, body, message in cases:
        response = api.post(path, json=body, headers=bearer(cluster.admin))
        assert response.status_code == 400, response.json
        assert message in response.json["error"]
    assert cluster.store.revision() == revision


def test_unknown_route_and_wrong_method_answer_json(api, cluster):
    response = api.get("/v1/nope", headers=bearer(cluster.admin))
    assert response.status_code == 404
    assert "openapi.json" in response.json["error"]
    response = api.put("/v1/nodes", headers=bearer(cluster.admin))
    assert response.status_code == 405
    assert "GET" in response.json["error"]


def test_unknown_token_ids_and_nodes_are_404_with_a_hint(api, cluster):
    assert "list them" in api.delete("/v1/tokens/join/0000beef", headers=bearer(cluster.admin)).json["error"]
    response = api.delete("/v1/nodes/nobody", headers=bearer(cluster.admin))
    assert response.status_code == 404
    assert "`vcapp nodes` lists them" in response.json["error"]
    assert api.delete("/v1/tokens/join/XYZ", headers=bearer(cluster.admin)).status_code == 400


def test_etcd_down_is_a_503_with_a_reason_and_healthz_says_so(api, cluster):
    assert api.get("/healthz").status_code == 200
    dead = create_app(ApiConfig.for_endpoints(["http://127.0.0.1:9"], "home-1")).test_client()
    response = dead.get("/v1/nodes", headers=bearer(cluster.admin))
    assert response.status_code == 503
    assert "etcd" in response.json["error"] and "not answering" in response.json["error"]
    assert response.headers["Retry-After"] == "1"  # the CLI asks a read again (vcapp/cli/client.py)
    health = dead.get("/healthz")
    assert health.status_code == 503 and health.json["ok"] is False


def test_openapi_lists_every_route_with_its_auth(api, cluster):
    assert api.get("/openapi.json").status_code == 401
    doc = api.get("/openapi.json", headers=bearer(cluster.admin)).json
    assert doc["openapi"].startswith("3.")
    app = api.application
    expected = {(rule.rule.replace("<", "{").replace(">", "}"), method.lower())
                for rule in app.url_map.iter_rules() for method in rule.methods - {"HEAD", "OPTIONS"}}
    listed = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert listed == expected
    assert {"/v1/join", "/v1/nodes/{name}", "/v1/status", "/v1/events", "/v1/tokens/join/{token}",
            "/v1/tokens/admin", "/healthz", "/openapi.json"} <= set(doc["paths"])
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"], (path, method)
            public = (path, method) in {("/healthz", "get"), ("/v1/join", "post"),
                                        ("/", "get"), ("/ui/{name}", "get")}  # the dashboard page holds no data
            machines = path.startswith("/v1/builds/") or path.endswith(("/phase", "/instances/{instance}/exec",
                                                                       "/console/here"))
            wanted = [] if public else [{"machineCredential": []}] if machines else [{"adminToken": []}]
            assert op["security"] == wanted, (path, method)
    assert doc["components"]["securitySchemes"]["adminToken"]["scheme"] == "bearer"
    assert doc["paths"]["/v1/nodes/{name}"]["delete"]["parameters"][0]["name"] == "name"
    json.dumps(doc)


def test_an_edge_reports_its_certificates_and_the_admin_sees_them_per_name(api, cluster):
    """`vcapp domains`: the edge (with its edge-scoped token) reports each served name's
    certificate; a name the cluster does not serve is dropped, a malformed report changes
    nothing, and only an admin reads the list."""
    edge = api.post("/v1/tokens/admin", json={"name": "edge-2", "scope": "edge"},
                    headers=bearer(cluster.admin)).json["token"]
    before = {r["host"]: r for r in api.get("/v1/domains", headers=bearer(cluster.admin)).json["domains"]}
    assert before["api.apps.example.com"]["state"] == "unknown"  # the edge has not said anything yet
    report = {"certificates": {"api.apps.example.com": {"state": "issued", "reason": "", "not_after": 2e9,
                                                        "since": 1.7e9},
                               "evil.example.org": {"state": "issued"}}}
    assert api.put("/v1/ingress/certificates", json=report, headers=bearer(edge)).json == {"kept": 1}
    bad = api.put("/v1/ingress/certificates", json={"certificates": {"api.apps.example.com": {"state": "meh"}}},
                  headers=bearer(edge))
    assert bad.status_code == 400 and "state must be one of" in bad.json["error"]
    rows = {r["host"]: r for r in api.get("/v1/domains", headers=bearer(cluster.admin)).json["domains"]}
    assert rows["api.apps.example.com"]["state"] == "issued" and rows["api.apps.example.com"]["not_after"] == 2e9
    assert "evil.example.org" not in rows
    assert api.get("/v1/domains", headers=bearer(edge)).status_code == 403


def test_the_routes_table_names_the_routers_of_machines_down(api, cluster):
    """The edge cuts its connections to those (vcapp/edge/daemon.py); it keeps listing them all."""
    table = api.get("/v1/ingress", headers=bearer(cluster.admin)).json
    assert table["nodes"] == table["down"] and len(table["down"]) == 1  # home-1 has no lease: down
    lease = cluster.store.grant(60)
    cluster.store.put(keys.alive("home-1"), {"at": time.time()}, lease=lease)
    table = api.get("/v1/ingress", headers=bearer(cluster.admin)).json
    assert table["down"] == [] and len(table["nodes"]) == 1


def test_each_poll_of_an_unchanged_routes_table_reads_etcd_once(api, cluster, monkeypatch):
    """Every edge polls the table each second: while nothing is written, a poll is one read of
    the revision (and the token check), not a fresh view; the first write after shows, the view's
    reads asked again in one transaction (vcapp/state/store.py shared_reads)."""
    table = api.get("/v1/ingress", headers=bearer(cluster.admin)).json
    sent = []
    real = Store._call
    monkeypatch.setattr(Store, "_call", lambda self, path, payload: sent.append(path) or real(self, path, payload))
    assert api.get("/v1/ingress", headers=bearer(cluster.admin)).json == table
    unchanged = len(sent)
    cluster.store.put(keys.alive("home-1"), {"at": time.time()}, lease=cluster.store.grant(60))
    sent.clear()
    assert api.get("/v1/ingress", headers=bearer(cluster.admin)).json["down"] == []
    # the view read again (cluster, machines, apps, reports, pending, suspects...): in one request
    assert sent.count("/kv/txn") == 1 and sent.count("/kv/range") == unchanged, sent


def test_an_edge_token_reads_the_routes_table_and_nothing_else(api, cluster):
    """What `vcapp dev up` gives the edge host: a stolen edge token cannot change the cluster,
    list its machines, or fetch or push code."""
    made = api.post("/v1/tokens/admin", json={"name": "edge-1", "scope": "edge"}, headers=bearer(cluster.admin))
    assert made.status_code == 201 and made.json["scope"] == "edge"
    edge = made.json["token"]
    table = api.get("/v1/ingress", headers=bearer(edge))
    assert table.status_code == 200 and "nodes" in table.json
    revision = cluster.store.revision()
    for method, path, body in mutations(cluster) + [("get", "/v1/nodes", None), ("get", "/v1/apps", None)]:
        response = getattr(api, method)(path, json=body, headers=bearer(edge))
        assert response.status_code == 403, (path, response.json)
        assert f"admin token {made.json['id']} (edge-1) is an edge token" in response.json["error"]
        assert "GET /v1/ingress" in response.json["error"]
    basic = "Basic " + base64.b64encode(f"admin:{edge}".encode()).decode()
    git = api.get("/git/anything.git/info/refs?service=git-upload-pack", headers={"Authorization": basic})
    assert git.status_code == 401
    assert cluster.store.revision() == revision
    listed = {t["id"]: t for t in api.get("/v1/tokens/admin", headers=bearer(cluster.admin)).json["tokens"]}
    assert listed[made.json["id"]]["scope"] == "edge" and "hash" not in listed[made.json["id"]]


def test_a_token_scope_that_does_not_exist_is_refused(api, cluster):
    revision = cluster.store.revision()
    response = api.post("/v1/tokens/admin", json={"name": "x", "scope": "root"}, headers=bearer(cluster.admin))
    assert response.status_code == 400 and "scope: 'root' is not one of admin, edge" in response.json["error"]
    assert cluster.store.revision() == revision


def test_builds_are_for_machines_only_not_admin_tokens(api, cluster):
    """A machine asks another to build with the credential derived from the cluster key; an
    admin token (even the first one) is not that, so nobody can run builds through it."""
    revision = cluster.store.revision()
    for headers in ({}, bearer(cluster.admin), bearer("0" * 64)):
        response = api.post("/v1/builds/blog/1", data=b"not a tarball", headers=headers)
        assert response.status_code == 401, response.json
        # nor make a machine push its images anywhere
        copies = api.post("/v1/builds/blog/1/copies", json={"digest": None}, headers=headers)
        assert copies.status_code == 401, copies.json
    assert "for the cluster's machines only" in response.json["error"]
    assert "for the cluster's machines only" in copies.json["error"]
    assert cluster.store.revision() == revision


def test_exec_on_a_machine_is_for_machines_and_exec_for_admins_only(api, cluster):
    """An instance's machine runs an exec only when another machine relays it; the admin asks
    POST /v1/apps/<app>/exec with an admin token, which an edge-scoped token is not."""
    edge = api.post("/v1/tokens/admin", json={"name": "edge-1", "scope": "edge"}, headers=bearer(cluster.admin))
    for headers in ({}, bearer(cluster.admin), bearer("0" * 64)):
        response = api.post("/v1/apps/blog/instances/0/exec", json={"command": "id"}, headers=headers)
        assert response.status_code == 401, response.json
    assert "for the cluster's machines only" in response.json["error"]
    for headers in ({}, bearer(edge.json["token"])):
        response = api.post("/v1/apps/blog/exec", json={"command": "id"}, headers=headers)
        assert response.status_code in (401, 403), response.json
