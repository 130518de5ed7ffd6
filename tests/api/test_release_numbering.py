"""One numbering, as Heroku's: every change that restarts an app's instances is a release (a
push, secrets set or unset, new limits, a rollback), through the admin API on a real etcd."""

from __future__ import annotations

import time

import pytest

from tests.api.conftest import bearer
from vcapp.state import apps, keys, releases, secrets

pytestmark = pytest.mark.cluster

V1_IMAGE = "10.0.0.1:5000/apps/blog:1"


def push(store, image: str, sha: str) -> dict:
    """What a push's pipeline does once the image is built: the next release, then set it."""
    rec = releases.record_next(store, "blog", {"kind": "build", "description": f"Deploy {sha[:7]}", "sha": sha,
                                               "image": image, "digest": None, "time": time.time(), "who": "admin",
                                               "config": {}, "status": "released"})
    apps.run_release(store, "blog", rec)
    return rec


def listed(api, token: str) -> list[dict]:
    answer = api.get("/v1/apps/blog/releases", headers=bearer(token))
    assert answer.status_code == 200, answer.json
    return answer.json["releases"]


def test_secrets_limits_and_rollbacks_are_releases_and_a_restart_or_a_count_is_not(cluster, api, node_dir):
    auth = bearer(cluster.admin)
    apps.create_app(cluster.store, "blog", {})
    push(cluster.store, V1_IMAGE, "a1" * 20)
    assert api.put("/v1/apps/blog/secrets", json={"secrets": {"GREETING": "bonjour"}}, headers=auth).status_code == 200
    v2 = listed(api, cluster.admin)[-1]
    assert (v2["number"], v2["kind"], v2["description"], v2["who"], v2["parent"]) == (2, "config", "Set GREETING",
                                                                                       "admin", 1)
    assert v2["image"] == V1_IMAGE and v2["status"] == "released"
    spec = apps.get_app(cluster.store, "blog")
    assert (spec["release"], apps.runtime_release(spec)) == (2, "2.0")  # the instances roll onto v2

    assert api.post("/v1/apps/blog/scale", json={"count": 3}, headers=auth).status_code == 200
    assert api.post("/v1/apps/blog/restart", json={}, headers=auth).status_code == 200
    spec = apps.get_app(cluster.store, "blog")
    assert len(listed(api, cluster.admin)) == 2 and apps.runtime_release(spec) == "2.1"  # rolled, same release

    assert api.post("/v1/apps/blog/scale", json={"memory": "512M"}, headers=auth).status_code == 200
    v3 = listed(api, cluster.admin)[-1]
    assert (v3["number"], v3["description"], v3["config"]["memory_mb"]) == (3, "Scale limits to 512 MB", 512)
    assert api.delete("/v1/apps/blog/secrets", json={"names": ["GREETING"]}, headers=auth).status_code == 200
    assert listed(api, cluster.admin)[-1]["description"] == "Unset GREETING"

    push(cluster.store, "10.0.0.1:5000/apps/blog:2", "b2" * 20)  # v5: new code
    back = api.post("/v1/apps/blog/rollback", json={}, headers=auth)
    assert back.status_code == 200, back.json
    # the newest release before v5 with other code: v4, v1's image with 512 MB and no secret
    assert (back.json["release"], back.json["target"], back.json["previous"]) == (6, 4, 5)
    v6 = listed(api, cluster.admin)[-1]
    assert (v6["kind"], v6["description"], v6["image"], v6["config"]["memory_mb"]) == \
        ("rollback", "Rollback to v4", V1_IMAGE, 512)
    assert apps.get_app(cluster.store, "blog")["release"] == 6
    kinds = [e.value.get("kind") for e in cluster.store.list(keys.EVENTS)]
    assert "rollback" in kinds and "secrets.set" in kinds


def test_a_push_during_a_config_change_takes_the_number_after_it(cluster, node_dir):
    apps.create_app(cluster.store, "blog", {})
    push(cluster.store, V1_IMAGE, "a1" * 20)
    # the push's build runs; meanwhile a secret is set: it takes v2 ...
    secrets.set_secrets(cluster.store, "blog", {"TOKEN": "x"}, "admin")
    # ... and the build, done, records v3 (its number is taken when it is written)
    assert push(cluster.store, "10.0.0.1:5000/apps/blog:2", "b2" * 20)["number"] == 3
    assert [r["number"] for r in releases.list_releases(cluster.store, "blog")] == [1, 2, 3]


def test_an_app_made_from_an_image_rolls_without_release_records(cluster, api, node_dir):
    apps.create_app(cluster.store, "blog", {"image": "docker.io/library/nginx:1", "port": 80})
    answer = api.put("/v1/apps/blog/secrets", json={"secrets": {"A": "1"}}, headers=bearer(cluster.admin))
    assert answer.status_code == 200
    spec = apps.get_app(cluster.store, "blog")
    assert listed(api, cluster.admin) == [] and apps.runtime_release(spec) == "1.1"
    assert apps.release_label(apps.runtime_release(spec)) == "v1" and apps.release_label(None) == "-"
