"""The credential-helper protocol: what `vcapp git-credential get` answers for which request."""

from __future__ import annotations

import pytest

from vcapp.cli.client import Login
from vcapp.cli.credential_helper import answer, cluster_git_urls, origin, parse_request, repo_url

pytestmark = pytest.mark.unit

TOKEN = "vcadm_0badc0de_" + "A" * 43
LOGIN = Login("http://10.0.0.1:7180", TOKEN, ("https://api.apps.example.com",))
GIVEN = f"username=admin\npassword={TOKEN}\n"


@pytest.mark.parametrize("request_text, expected", [
    ("protocol=http\nhost=10.0.0.1:7180\npath=git/blog.git\n\n", GIVEN),
    ("protocol=https\nhost=api.apps.example.com\n\n", GIVEN),
    ("protocol=https\nhost=api.apps.example.com:443\n", GIVEN),         # the default port, spelled out
    ("protocol=HTTPS\nhost=API.Apps.Example.com\n", GIVEN),             # hosts are case-insensitive
    ("url=http://10.0.0.1:7180/git/blog.git\n", GIVEN),
    ("protocol=http\nhost=10.0.0.1\n", ""),                             # another port
    ("protocol=https\nhost=10.0.0.1:7180\n", ""),                       # another scheme
    ("protocol=https\nhost=github.com\npath=me/blog.git\n", ""),
    ("protocol=https\nhost=api.apps.example.com.evil.test\n", ""),
    ("protocol=http\n\nhost=10.0.0.1:7180\n", ""),                      # after the blank line: not read
    ("protocol=ssh\nhost=10.0.0.1:7180\n", ""),
    ("", ""),
])
def test_the_token_goes_to_the_clusters_urls_only(request_text, expected):
    assert answer(parse_request(request_text), LOGIN) == expected


def test_logged_out_answers_nothing():
    assert answer(parse_request("protocol=http\nhost=10.0.0.1:7180\n"), None) == ""


def test_origin_and_repo_url():
    assert origin("https://Api.Example.com:443/x") == ("https", "api.example.com")
    assert origin("http://[::1]:7180/") == ("http", "[::1]:7180")
    assert origin("ftp://example.com/") is None and origin("http://h:99999/") is None
    assert repo_url("http://10.0.0.1:7180/", "blog") == "http://10.0.0.1:7180/git/blog.git"


def test_the_token_is_for_the_edge_and_every_machine_once_besides_the_login_url():
    machines = [{"api_url": "http://10.0.0.1:7180/"}, {"api_url": "http://10.0.0.2:7180"}, {"name": "old"}]
    assert cluster_git_urls("http://10.0.0.1:7180", "apps.example.com", machines) == (
        "https://api.apps.example.com", "http://10.0.0.2:7180")
    assert cluster_git_urls("https://api.apps.example.com:443", "apps.example.com", machines) == (
        "http://10.0.0.1:7180", "http://10.0.0.2:7180")
    assert cluster_git_urls("http://10.0.0.1:7180", None, []) == ()
