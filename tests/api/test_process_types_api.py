"""Process types through the admin API on a real etcd: an app created with a worker, scaled
per type (`vcapp scale APP worker=2 web=0`), listed by `ps` with each instance's type; a type
the app does not have or an absurd count is a 400 that changes nothing; a new release's
process table replaces the old one and keeps the counts a person set."""

from __future__ import annotations

import base64

import pytest

from tests.api.conftest import CLUSTER_KEY, bearer
from vcapp.api.app import ApiConfig, create_app
from vcapp.state import apps, keys

pytestmark = pytest.mark.cluster

WORKER = ["sh", "-c", "exec python worker.py"]


@pytest.fixture
def api(etcd_url, tmp_path, monkeypatch):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "cluster.key").write_text(base64.b64encode(CLUSTER_KEY).decode())
    monkeypatch.setenv("VCAPP_DATA_DIR", str(tmp_path))
    return create_app(ApiConfig.for_endpoints([etcd_url], "home-1", lambda: CLUSTER_KEY)).test_client()


@pytest.fixture
def shop(api, cluster):
    body = {"name": "shop", "image": "localhost/shop:1", "port": 8080,
            "processes": {"worker": {"command": WORKER}}}
    answer = api.post("/v1/apps", json=body, headers=bearer(cluster.admin))
    assert answer.status_code == 201, answer.get_data(as_text=True)
    return cluster


def scale(api, cluster, body):
    return api.post("/v1/apps/shop/scale", json=body, headers=bearer(cluster.admin))


def test_scale_per_type_and_ps_lists_each_type(api, shop):
    answer = scale(api, shop, {"processes": {"worker": 2, "web": 3}})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    spec = shop.store.value(keys.app("shop"))
    assert spec["count"] == 3 and spec["processes"] == {"worker": {"command": WORKER, "count": 2}}
    rows = api.get("/v1/apps/shop/ps", headers=bearer(shop.admin)).json["instances"]
    assert [(r["instance"], r["process"]) for r in rows] == [
        ("0", "web"), ("1", "web"), ("2", "web"), ("worker-0", "worker"), ("worker-1", "worker")]
    assert scale(api, shop, {"count": 1, "processes": {"worker": 0}}).status_code == 200
    rows = api.get("/v1/apps/shop/ps", headers=bearer(shop.admin)).json["instances"]
    assert [r["instance"] for r in rows] == ["0"]


@pytest.mark.parametrize("body, message", [
    ({"processes": {"clock": 1}}, "app shop has no process type 'clock'; its types are web, worker"),
    ({"processes": {"worker": 1000}}, "worker: count: must be between 0 (stopped) and 100"),
    ({"processes": {"worker": "1e400"}}, "worker: count: '1e400' is not a whole number"),
    ({"processes": {"worker\n": 1}}, "process type 'worker\\n' is not valid"),
    ({"processes": ["worker"]}, "give counts per process type"),
    ({"count": 2, "processes": {"web": 2}}, "give web's count once"),
])
def test_bad_scale_is_a_400_that_changes_nothing(api, shop, body, message):
    revision = shop.store.revision()
    answer = scale(api, shop, body)
    assert answer.status_code == 400 and message in answer.json["error"], answer.json
    assert shop.store.revision() == revision


def test_a_release_replaces_the_process_table_and_keeps_scaled_counts(api, shop):
    assert scale(api, shop, {"processes": {"worker": 3}}).status_code == 200
    other = ["sh", "-c", "exec python clock.py"]
    spec = apps.set_release(shop.store, "shop", 2, "localhost/shop:2",
                            {"processes": {"worker": ["sh", "-c", "new"], "clock": other}})
    assert spec["processes"] == {"worker": {"command": ["sh", "-c", "new"], "count": 3},
                                 "clock": {"command": other, "count": 1}}
    spec = apps.set_release(shop.store, "shop", 3, "localhost/shop:3", {"processes": {}})
    assert "processes" not in spec
