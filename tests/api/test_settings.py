"""Cluster settings over the admin API: build.proxy, the forward proxy builds go out through
(its password sealed, never shown), and build.no_proxy, the hosts builds reach directly."""

from __future__ import annotations

import json

import pytest

from builder.build import Proxy
from tests.api.conftest import bearer
from vcapp.state import buildproxy, keys

pytestmark = pytest.mark.cluster


def test_build_proxy_is_set_shown_used_by_builds_and_cleared(api, cluster):
    auth = bearer(cluster.admin)
    assert api.get("/v1/settings", headers=auth).json == {"build.proxy": None, "build.no_proxy": None}
    assert buildproxy.for_build(cluster.store, "100.96.0.10:5000") is None  # builds go direct

    answer = api.put("/v1/settings/build.proxy", json={"value": "http://proxy.corp.test:3128"}, headers=auth)
    assert answer.status_code == 200 and answer.json["build.proxy"] == "http://proxy.corp.test:3128"
    assert api.get("/v1/settings", headers=auth).json["build.proxy"] == "http://proxy.corp.test:3128"
    assert buildproxy.for_build(cluster.store, "100.96.0.10:5000") == Proxy(
        "http://proxy.corp.test:3128", no_proxy=("100.96.0.10", "100.96.0.0/16"))

    assert api.put("/v1/settings/build.proxy", json={"value": ""}, headers=auth).json["build.proxy"] is None
    assert cluster.store.get(keys.BUILD_PROXY) is None


@pytest.mark.parametrize("name, value, message", [
    ("build.proxy", "proxy.corp.test:3128", "is not a proxy URL; write http://HOST:PORT"),
    ("build.proxy", "ftp://proxy.corp.test:21", "is not a proxy URL"),
    ("build.proxy", "http://proxy.corp.test:3128/path", "is not a proxy URL"),
    ("build.proxy", "http://proxy.corp.test:99999", "is not a proxy URL"),
    ("build.proxy", 3128, "give the proxy's URL as a string"),
    ("build.proxy", "http://:pw@proxy.corp.test:3128", "a password needs a user name"),
    ("build.proxy", "http://me@proxy\n.corp.test:3128", "is not a proxy URL"),
    ("build.no_proxy", "mirror.lan,bad_host!", "'bad_host!' is not a host name, address or network"),
    ("build.no_proxy", ",".join(f"h{i}.lan" for i in range(65)), "65 entries; at most 64"),
    ("build.no_proxy", ["mirror.lan"], "give the hosts as a string"),
    ("build.mirror", "http://x:1", "no setting 'build.mirror'; settings are build.proxy, build.no_proxy"),
])
def test_a_bad_setting_is_refused_and_changes_nothing(api, cluster, name, value, message):
    revision = cluster.store.revision()
    answer = api.put(f"/v1/settings/{name}", json={"value": value}, headers=bearer(cluster.admin))
    assert answer.status_code == 400 and message in answer.json["error"], answer.json
    assert cluster.store.revision() == revision


def test_a_proxy_login_is_sealed_masked_and_given_only_to_builds(api, cluster, node_dir):
    auth = bearer(cluster.admin)
    answer = api.put("/v1/settings/build.proxy", headers=auth,
                     json={"value": "http://builder@proxy.corp.test:3128", "password": "s3cr:t/pw"})
    assert answer.status_code == 200 and answer.json["build.proxy"] == "http://builder:***@proxy.corp.test:3128"
    raw = json.dumps(cluster.store.value(keys.BUILD_PROXY))
    assert "s3cr" not in raw and "proxy.corp.test" in raw  # sealed in etcd, the host in clear
    api.put("/v1/settings/build.no_proxy", json={"value": "mirror.lan, .corp.test 10.9.0.0/16"}, headers=auth)
    assert api.get("/v1/settings", headers=auth).json == {
        "build.proxy": "http://builder:***@proxy.corp.test:3128", "build.no_proxy": "mirror.lan,.corp.test,10.9.0.0/16"}

    proxy = buildproxy.for_build(cluster.store, "100.96.0.10:5000")
    assert proxy.url == "http://builder:s3cr%3At%2Fpw@proxy.corp.test:3128"  # what the build's pip and npm read
    assert proxy.no_proxy == ("100.96.0.10", "100.96.0.0/16", "mirror.lan", ".corp.test", "10.9.0.0/16")
    events = [e.value for e in cluster.store.list(keys.EVENTS)]
    assert events and not any("s3cr" in json.dumps(e) for e in events)  # never in the history either

    api.put("/v1/settings/build.proxy", json={"value": ""}, headers=auth)
    api.put("/v1/settings/build.no_proxy", json={"value": ""}, headers=auth)
    assert api.get("/v1/settings", headers=auth).json == {"build.proxy": None, "build.no_proxy": None}
