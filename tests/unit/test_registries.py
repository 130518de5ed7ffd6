"""`vcapp registries`: input checks, the drop-in every machine writes, and the auth file entries."""

from __future__ import annotations

import base64
import json

import pytest

from builder import registry as reg
from buildpacks.packs import exposed_port
from vcapp import appconfig
from vcapp.deploy.pipeline import with_exposed_port
from vcapp.errors import BadRequest
from vcapp.state import registries, secrets

KEY = bytes(range(32))


@pytest.mark.parametrize("host, clean", [("docker.io", "docker.io"), ("GHCR.io", "ghcr.io"),
                                         ("registry.example:5000", "registry.example:5000"),
                                         ("203.0.113.100:5000", "203.0.113.100:5000")])
def test_hosts_are_names_with_an_optional_port(host, clean):
    assert registries.check_host(host) == clean


@pytest.mark.parametrize("host", ["", "docker.io/library", "a b", "docker.io\n", "x:0", "x:99999", "-bad.io",
                                  'ev"il.io', "docker.io:5000:1", "a" * 300, "http://docker.io", None, 5])
def test_bad_hosts_say_what_to_write(host):
    with pytest.raises(BadRequest, match="host|HOST"):
        registries.check_host(host)


@pytest.mark.parametrize("url, location, plain", [
    ("http://203.0.113.100:5000", "203.0.113.100:5000", True),
    ("https://mirror.gcr.io", "mirror.gcr.io", False),
    ("https://proxy.lan/dockerhub/", "proxy.lan/dockerhub", False),
    ("", "", False),
])
def test_mirror_urls_become_registries_conf_locations(url, location, plain):
    assert registries.check_mirror(url) == (location, plain)


@pytest.mark.parametrize("url", ["ftp://m.lan", "http://user:pw@m.lan", "http://m.lan?x=1", 'http://m.lan/"x',
                                 "http://m.lan/a b", "m.lan:5000", "http://m.lan\n", "http://m\tlan", "http://m.lan#f", "http://" + "a" * 600])
def test_bad_mirrors_are_refused(url):
    with pytest.raises(BadRequest, match="mirror"):
        registries.check_mirror(url)


@pytest.mark.parametrize("user, password, message", [
    ("u", "", "both"), ("", "p", "both"), ("a:b", "p", "username"), ("a b", "p", "username"),
    ("u", "p\nq", "control"), ("u", "p\x00", "control"), ("u", "x" * 5000, "at most"),
])
def test_logins_are_both_or_neither_and_one_line(user, password, message):
    with pytest.raises(BadRequest, match=message):
        registries.check_login(user, password)


def test_the_dropin_mirrors_each_registry_and_allows_plain_http_only_where_asked():
    recs = [{"host": "docker.io", "mirror": "203.0.113.100:5000", "insecure": True},
            {"host": "ghcr.io", "mirror": "", "insecure": False, "username": "me", "password": "sealed"},
            {"host": "registry.lan:5000", "mirror": "", "insecure": True}]
    assert registries.dropin_text(recs) == (
        "# Written by the vcapp node daemon (vcapp/node/registry_loop.py): `vcapp registries`.\n"
        '\n[[registry]]\nlocation = "docker.io"\n'
        '[[registry.mirror]]\nlocation = "203.0.113.100:5000"\ninsecure = true\n'
        '\n[[registry]]\nlocation = "ghcr.io"\n'
        '\n[[registry]]\nlocation = "registry.lan:5000"\ninsecure = true\n')


def test_credentials_go_to_the_registry_and_its_mirror_beside_the_machine_credential():
    recs = [{"host": "docker.io", "mirror": "mirror.lan:5000", "username": "me",
             "password": secrets.seal("s3cret", KEY)},
            {"host": "quay.io", "mirror": "", "username": "", "password": ""},
            {"host": "old.io", "mirror": "", "username": "x", "password": secrets.seal("y", bytes(32))}]
    creds = registries.credentials(recs, KEY)
    assert sorted(creds) == ["docker.io", "mirror.lan:5000"], "no login, or one sealed by another key: left out"
    auths = json.loads(reg.auth_json(["10.1.0.11:5000"], reg.Credential("vcapp-machine", "m"), creds))["auths"]
    assert base64.b64decode(auths["docker.io"]["auth"]).decode() == "me:s3cret"
    assert base64.b64decode(auths["mirror.lan:5000"]["auth"]).decode() == "me:s3cret"
    assert base64.b64decode(auths["10.1.0.11:5000"]["auth"]).decode() == "vcapp-machine:m"
    assert "s3cret" not in repr(creds)


def test_the_listing_never_shows_the_password():
    shown = registries.public({"host": "ghcr.io", "mirror": "", "insecure": False, "username": "me",
                               "password": secrets.seal("s3cret", KEY), "added_at": 1.0, "by": "admin"})
    assert shown == {"host": "ghcr.io", "mirror": None, "insecure": False, "username": "me", "password": True,
                     "added_at": 1.0, "by": "admin"}


@pytest.mark.parametrize("dockerfile, port", [
    ("FROM alpine:3.19\nEXPOSE 8080\n", 8080),
    ("FROM alpine\nEXPOSE 3000/tcp 9000\nEXPOSE 4000\n", 3000),
    ("FROM node AS build\nEXPOSE 1234\nFROM alpine\nCMD x\n", None),
    ("FROM alpine\nexpose 53/udp \\\n  5000\n", 5000),
    ("FROM alpine\nEXPOSE $PORT\n", None),
    ("FROM alpine\nEXPOSE 70000\n", None),
    ("FROM alpine\nCMD x\n", None),
])
def test_expose_names_the_last_stages_first_tcp_port(dockerfile, port):
    assert exposed_port(dockerfile) == port


def test_vcapp_toml_port_wins_over_expose_which_wins_over_the_default():
    assert with_exposed_port(appconfig.defaults(), None, 8080).port == 8080
    assert with_exposed_port(appconfig.defaults(), None, None).port == appconfig.DEFAULT_PORT
    toml = 'port = 5000\n'
    assert with_exposed_port(appconfig.parse(toml), toml, 8080).port == 5000
    toml = '[health]\npath = "/up"\n'
    assert with_exposed_port(appconfig.parse(toml), toml, 3000).port == 3000
