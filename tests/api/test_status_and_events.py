"""Status counts machines up and down from their liveness keys; events can be long-polled."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from storage.host import StorageError
from tests.api.conftest import bearer, client_post, sealed_join
from vcapp.api.validate import format_duration, parse_duration, parse_uses
from vcapp.cli.status import storage_line
from vcapp.errors import BadRequest
from vcapp.node.storage_loop import ReplicationLoop
from vcapp.state import events, keys

pytestmark = pytest.mark.cluster


def test_status_reports_machines_up_and_down_with_counts(api, cluster):
    office = {"name": "office-1", "site": "office", "addr": "10.0.1.2", "api_url": "http://10.0.1.2:7180",
              "resources": {"cpus": 2, "memory_mb": 4000, "free_memory_mb": 1000}}
    assert sealed_join(client_post(api), cluster.join, office).status_code == 201
    seen = time.time()
    lease = cluster.store.grant(10)
    cluster.store.put(keys.alive("home-1"), {"at": seen}, lease=lease)
    try:
        status = api.get("/v1/status", headers=bearer(cluster.admin)).json
    finally:
        cluster.store.revoke(lease)
    assert status["cluster"]["name"] == "acme" and status["cluster"]["max_nodes"] == 10
    assert status["served_by"] == "home-1" and status["admin"] == "admin"
    summary = status["summary"]
    assert (summary["nodes"], summary["up"], summary["down"]) == (2, 1, 1)
    assert summary["sites"] == {"home": {"up": 1, "down": 0}, "office": {"up": 0, "down": 1}}
    assert summary["cpus"] == 4 and summary["memory_mb"] == 8000  # only machines that are up count
    nodes = {n["name"]: n for n in status["nodes"]}
    assert nodes["home-1"]["up"] is True and abs(nodes["home-1"]["last_seen"] - seen) < 5
    assert nodes["office-1"]["up"] is False
    after = api.get("/v1/nodes", headers=bearer(cluster.admin)).json["nodes"]
    assert not any(n["up"] for n in after)  # the liveness key went with its lease


def test_status_says_which_machines_app_data_counts_and_why_it_is_not_restored(api, cluster):
    controller = ReplicationLoop(SimpleNamespace(cfg=SimpleNamespace(store_endpoints=lambda: [cluster.etcd_url])))
    degraded = {"code": "010", "state": "degraded", "live": 2, "counted": ["home-1", "home-2"], "healed": []}
    controller._publish(cluster.store, {}, degraded)
    controller._record_failure(StorageError("weed shell on home-1 failed (lock; volume.fix.replication -apply): "
                                            "no master leader yet"))
    storage = api.get("/v1/status", headers=bearer(cluster.admin)).json["storage"]
    assert storage["state"] == "degraded" and storage["counted"] == ["home-1", "home-2"]
    assert storage["error"].endswith("no master leader yet")
    line = storage_line(storage)
    assert "DEGRADED" in line and "copies on home-1, home-2" in line
    assert "the last try to restore them failed: weed shell on home-1 failed" in line

    before = cluster.store.value(keys.STORAGE_STATE)
    controller._publish(cluster.store, before, dict(degraded, code="020", state="healthy", live=3,
                                                    counted=["home-1", "home-2", "office-1"]))
    storage = api.get("/v1/status", headers=bearer(cluster.admin)).json["storage"]
    assert storage["state"] == "healthy" and storage["error"] is None  # a pass that finished
    assert storage_line(storage).startswith("storage   3 copies of app data") and "failed" not in storage_line(storage)


def test_events_latest_then_after_an_id(api, cluster):
    first = api.get("/v1/events", headers=bearer(cluster.admin)).json
    assert [e["kind"] for e in first["events"]] == ["cluster.created"]
    created = api.post("/v1/tokens/join", json={}, headers=bearer(cluster.admin)).json
    later = api.get(f"/v1/events?after={first['last']}", headers=bearer(cluster.admin)).json
    assert [e["kind"] for e in later["events"]] == ["token.join.created"]
    assert created["id"] in later["events"][0]["message"]
    assert api.get("/v1/events?after=bogus", headers=bearer(cluster.admin)).status_code == 400
    assert api.get("/v1/events?limit=0", headers=bearer(cluster.admin)).status_code == 400
    assert api.get("/v1/events?wait=60", headers=bearer(cluster.admin)).status_code == 400


def test_a_long_poll_returns_as_soon_as_an_event_arrives(api, cluster):
    last = api.get("/v1/events", headers=bearer(cluster.admin)).json["last"]
    timer = threading.Timer(0.5, events.record, (cluster.store, "node.down", "office-1 is down"),
                            {"node": "office-1"})
    timer.start()
    started = time.monotonic()
    answer = api.get(f"/v1/events?after={last}&wait=10", headers=bearer(cluster.admin)).json
    waited = time.monotonic() - started
    timer.join()
    assert [e["kind"] for e in answer["events"]] == ["node.down"]
    assert 0.4 < waited < 2.0
    started = time.monotonic()
    empty = api.get(f"/v1/events?after={answer['last']}&wait=1", headers=bearer(cluster.admin)).json
    assert empty["events"] == [] and empty["last"] == answer["last"]
    assert 0.9 < time.monotonic() - started < 3


@pytest.mark.unit
def test_durations_and_uses_are_parsed_one_way_for_cli_and_api():
    assert [parse_duration(v) for v in ("30m", "1h", "2d", "1w", "90s", "45", 3600, "never", "0")] == \
        [1800, 3600, 172800, 604800, 90, 45, 3600, 0, 0]
    for bad in ("1y", "-1h", "h", "", None, True, "400d"):
        with pytest.raises(BadRequest):
            parse_duration(bad)
    assert [format_duration(s) for s in (45, 1800, 3600, 172800)] == ["45s", "30m", "1h", "2d"]
    assert parse_uses(None) == 0 and parse_uses("3") == 3
    with pytest.raises(BadRequest, match="not a whole number"):
        parse_uses("many")
