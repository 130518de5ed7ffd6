"""The dashboard's routes over a real etcd (single member on loopback) with records a machine
and an app would write: /v1/dashboard, /v1/history, /v1/warnings, /metrics, and the page."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import api, cluster, etcd_url  # noqa: F401  (fixtures)
from vcapp.node import metrics_loop
from vcapp.state import keys

pytestmark = pytest.mark.cluster


def seed(store) -> None:
    store.put(keys.alive("home-1"), {"at": time.time()})
    store.put(keys.node("home-2"), {"name": "home-2", "site": "office", "addr": "10.0.1.2", "cpus": 2,
                                    "memory_mb": 1000, "free_memory_mb": 50, "disk_mb": 100, "free_disk_mb": 50})
    store.put(keys.alive("home-2"), {"at": time.time()})
    store.put(keys.node("home-3"), {"name": "home-3", "site": "home", "addr": "10.0.0.3"})
    store.put(keys.app("blog"), {"name": "blog", "image": "img", "release": 3, "count": 1, "policy": "public"})
    store.put(keys.assign("blog", "0"), {"app": "blog", "instance": "0", "node": "home-2", "release": "3.0"})
    store.put(keys.status("home-2", "blog", "0"), {"app": "blog", "instance": "0", "state": "running",
                                                   "health": "healthy", "restarts": 2, "cpu_percent": 1.5,
                                                   "memory_mb": 12.5})


def auth(c) -> dict:
    return {"Authorization": f"Bearer {c.admin}"}


def test_routes_show_machines_apps_history_warnings_and_prometheus_text(api, cluster):  # noqa: F811
    seed(cluster.store)
    history: dict = {}
    now = time.time()
    for i in range(3):
        metrics_loop.sample_once(cluster.store, history, now - 20 + 10 * i)
    metrics_loop.warn(cluster.store, history, [], now)
    metrics_loop.write_summary(cluster.store, history, [(now - 5, "blog")], now)

    assert api.get("/v1/dashboard").status_code == 401
    snap = api.get("/v1/dashboard", headers=auth(cluster)).get_json()
    nodes = {n["name"]: n for n in snap["nodes"]}
    assert nodes["home-1"]["up"] and nodes["home-2"]["up"] and not nodes["home-3"]["up"]
    assert [i["app"] for i in nodes["home-2"]["instances"]] == ["blog"]
    blog = snap["apps"][0]
    assert blog["health"] == "healthy" and blog["url"] == "https://blog.apps.example.com"
    assert blog["uptime_24h"] == 100.0 and blog["failovers_24h"] == 1
    assert [w["id"] for w in snap["warnings"]] == ["memory:home-2"]

    events = api.get("/v1/events?limit=100", headers=auth(cluster)).get_json()["events"]
    assert any(e["kind"] == "warning" and "memory nearly full" in e["message"] for e in events)

    h = api.get("/v1/history?subject=node/home-2&range=1h", headers=auth(cluster)).get_json()
    assert h["tier"] == "10s" and len(h["t"]) == 3 and h["cols"]["mem"][-1] == 95.0
    assert api.get("/v1/history?subject=bogus", headers=auth(cluster)).status_code == 400
    every = api.get("/v1/history", headers=auth(cluster)).get_json()["subjects"]
    assert every["app/blog"]["latest"]["healthy"] == 1 and every["node/home-3"]["latest"] == {"up": 0}

    text = api.get("/metrics", headers=auth(cluster)).get_data(as_text=True)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    up = {s.labels["node"]: s.value for s in families["vcapp_node_up"].samples}
    assert up == {"home-1": 1, "home-2": 1, "home-3": 0}
    assert families["vcapp_app_restarts"].type == "counter"
    assert [s.value for s in families["vcapp_app_restarts"].samples] == [2]
    assert {(s.labels["window"], s.value) for s in families["vcapp_app_failovers"].samples} == {("24h", 1), ("7d", 1)}
    assert api.get("/metrics").status_code == 401

    page = api.get("/")
    assert page.status_code == 200 and b"Admin token" in page.data
    assert api.get("/ui/dash.js").status_code == 200 and api.get("/ui/nope.js").status_code == 404
