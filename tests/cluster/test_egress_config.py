"""The dev proxy's configuration as data (vcapp/dev/egress.py; pure, no namespaces)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vcapp.dev import egress

pytestmark = pytest.mark.unit


def test_each_cluster_takes_a_slot_of_its_own():
    first = egress.free_slot("dev", set())
    assert egress.free_slot("dev", set()) == first  # stable for a name
    taken = {egress.Link(first).proxy_addr}
    second = egress.free_slot("dev", taken)
    assert second != first and egress.Link(second).proxy_addr not in taken
    every = {egress.Link(s).proxy_addr for s in range(egress.SLOTS)}
    with pytest.raises(egress.EgressError, match="all 64 proxy links"):
        egress.free_slot("dev", every)


def test_a_link_is_a_point_to_point_pair_in_the_documentation_range():
    link = egress.Link(3)
    assert (link.proxy_addr, link.backbone_addr, link.url) == ("198.51.100.13", "198.51.100.14",
                                                              "http://198.51.100.13:8888")


def test_the_filter_matches_allowed_names_exactly():
    rules = [re.compile(line, re.IGNORECASE) for line in egress.filter_rules(egress.ALLOWED).splitlines()]
    allowed = lambda host: any(r.search(host) for r in rules)  # noqa: E731
    for host in ("pypi.org", "files.pythonhosted.org", "deb.debian.org", "security.debian.org",
                 "registry.npmjs.org", "PyPI.org", "proxy.golang.org", "registry-1.docker.io", "ghcr.io"):
        assert allowed(host), host
    for host in ("example.invalid", "evilpypi.org", "pypi.org.evil.test", "pypixorg", "debian.org",
                 "docker.io.evil.test", "x.ghcr.io"):
        assert not allowed(host), host


@pytest.mark.parametrize("environ, upstream", [
    ({}, None),
    ({"https_proxy": "http://proxy.corp.test:3128"}, "proxy.corp.test:3128"),
    ({"HTTP_PROXY": "proxy.corp.test:8080"}, "proxy.corp.test:8080"),
    ({"http_proxy": "http://proxy.corp.test"}, "proxy.corp.test:80"),
    ({"https_proxy": "http://a.test:1", "http_proxy": "http://b.test:2"}, "a.test:1"),
])
def test_the_hosts_own_proxy_becomes_the_upstream(environ, upstream):
    assert egress.upstream(environ) == upstream
    text = egress.config(egress.Link(0), egress.ALLOWED, Path("/d"), upstream)
    assert (f"Upstream http {upstream}" in text) if upstream else ("Upstream" not in text)


def test_the_config_denies_by_default_and_serves_only_the_link():
    text = egress.config(egress.Link(0), egress.ALLOWED, Path("/d"), None).splitlines()
    for line in ("Listen 198.51.100.1", "Port 8888", "Allow 198.51.100.2", "Allow 198.51.100.1",
                 "FilterDefaultDeny Yes", "FilterType ere", 'Filter "/d/allow.filter"', "ConnectPort 443"):
        assert line in text
    assert [line for line in text if line.startswith("Allow")] == ["Allow 198.51.100.2", "Allow 198.51.100.1"]
