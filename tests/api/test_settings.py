"""Cluster settings over the admin API: build.proxy, the forward proxy builds go out through."""

from __future__ import annotations

import pytest

from builder.build import Proxy
from vcapp import buildproxy, keys
from tests.api.conftest import bearer

pytestmark = pytest.mark.cluster


def test_build_proxy_is_set_shown_used_by_builds_and_cleared(api, cluster):
    auth = bearer(cluster.admin)
    assert api.get("/v1/settings", headers=auth).json == {"build.proxy": None}
    assert buildproxy.for_build(cluster.store, "100.96.0.10:5000") is None  # builds go direct

    answer = api.put("/v1/settings/build.proxy", json={"value": "http://proxy.corp.test:3128"}, headers=auth)
    assert answer.status_code == 200 and answer.json == {"build.proxy": "http://proxy.corp.test:3128"}
    assert api.get("/v1/settings", headers=auth).json == {"build.proxy": "http://proxy.corp.test:3128"}
    assert buildproxy.for_build(cluster.store, "100.96.0.10:5000") == Proxy(
        "http://proxy.corp.test:3128", no_proxy=("100.96.0.10", "100.96.0.0/16"))

    assert api.put("/v1/settings/build.proxy", json={"value": ""}, headers=auth).json == {"build.proxy": None}
    assert cluster.store.get(keys.BUILD_PROXY) is None


@pytest.mark.parametrize("name, value, message", [
    ("build.proxy", "proxy.corp.test:3128", "is not a proxy URL; write http://HOST:PORT"),
    ("build.proxy", "ftp://proxy.corp.test:21", "is not a proxy URL"),
    ("build.proxy", "http://proxy.corp.test:3128/path", "is not a proxy URL"),
    ("build.proxy", "http://proxy.corp.test:99999", "is not a proxy URL"),
    ("build.proxy", 3128, "give the proxy's URL as a string"),
    ("build.mirror", "http://x:1", "no setting 'build.mirror'; settings are build.proxy"),
])
def test_a_bad_setting_is_refused_and_changes_nothing(api, cluster, name, value, message):
    revision = cluster.store.revision()
    answer = api.put(f"/v1/settings/{name}", json={"value": value}, headers=bearer(cluster.admin))
    assert answer.status_code == 400 and message in answer.json["error"], answer.json
    assert cluster.store.revision() == revision
