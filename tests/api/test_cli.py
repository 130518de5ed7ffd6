"""The admin CLI against the API served by its real server (cheroot), as a person at a laptop uses it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest
import requests

from tests.api.conftest import bearer, sealed_join

pytestmark = pytest.mark.cluster


@pytest.fixture
def logged_in(served, vcapp_cli):
    url, cluster, _ = served
    result = vcapp_cli("login", url, cluster.admin)
    assert result.code == 0, result.err
    return vcapp_cli


def test_login_checks_the_token_saves_it_privately_and_says_who_you_are(served, vcapp_cli):
    url, cluster, _ = served
    result = vcapp_cli("login", url + "/", cluster.admin)
    assert result.code == 0, result.err
    assert f"logged in to cluster acme at {url} as 'admin'" in result.out
    config = vcapp_cli.home / ".config" / "vcapp" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    assert json.loads(config.read_text()) == {"url": url, "token": cluster.admin,
                                              "git_urls": ["https://api.apps.example.com", "http://10.0.0.1:7180"]}


def test_a_wrong_token_is_a_clear_message_and_exit_1_and_nothing_saved(served, vcapp_cli):
    url, _, _ = served
    result = vcapp_cli("login", url, "vcadm_0badc0de_" + "A" * 43)
    assert result.code == 1
    assert "admin token not recognised" in result.err and result.out == ""
    assert not (vcapp_cli.home / ".config" / "vcapp" / "config.json").exists()


def test_an_unreachable_api_says_so(served, vcapp_cli):
    _, cluster, _ = served
    result = vcapp_cli("login", "http://127.0.0.1:9", cluster.admin)
    assert result.code == 1
    assert "cannot reach http://127.0.0.1:9: connection refused (is the cluster up?" in result.err


def test_commands_without_login_say_how_to_log_in(vcapp_cli):
    result = vcapp_cli("nodes")
    assert result.code == 1
    assert "not logged in: run `vcapp login URL` (it asks for the token)" in result.err


def test_env_overrides_the_saved_login(served, logged_in):
    result = logged_in("nodes", extra_env={"VCAPP_TOKEN": "vcadm_0badc0de_" + "A" * 43})
    assert result.code == 1 and "not recognised" in result.err


def test_nodes_and_status_for_people_and_scripts(served, logged_in):
    url, cluster, _ = served
    lease = cluster.store.grant(30)
    cluster.store.put("/vc/alive/home-1", {"at": time.time()}, lease=lease)
    try:
        machines = json.loads(logged_in("nodes", "--json").out)
        table = logged_in("nodes").out
        status = logged_in("status").out
        status_json = json.loads(logged_in("status", "--json").out)
    finally:
        cluster.store.revoke(lease)
    assert [(m["name"], m["site"], m["up"], m["cpus"]) for m in machines] == [("home-1", "home", True, 4)]
    header, row = table.splitlines()
    assert header.split() == ["NAME", "SITE", "STATE", "ADDR", "CPUS", "MEM", "DISK", "VERSION", "LAST", "SEEN"]
    assert row.split()[:8] == ["home-1", "home", "up", "10.0.0.1", "4", "2.0G/7.8G", "39.1G/97.7G", "0.1.0+84b3173"]
    assert row.index("up") == header.index("STATE")  # aligned columns
    assert row.rstrip().endswith(("0s ago", "1s ago"))  # a machine that is up was seen just now
    assert "cluster   acme" in status and "1 up, 0 down (home 1/1 up)" in status
    assert status_json["summary"]["up"] == 1 and status_json["cluster"]["domain"] == "apps.example.com"


def test_join_tokens_create_list_revoke_and_their_events(served, logged_in):
    created = logged_in("tokens", "join", "create", "--expires", "30m", "--uses", "2", "--name", "office")
    assert created.code == 0, created.err
    assert "expires in 30m, 2 uses" in created.out
    command = next(line.strip() for line in created.out.splitlines() if "vcapp node join vcjoin_" in line)
    token_id = created.out.split("join token ", 1)[1].split()[0]
    listed = json.loads(logged_in("tokens", "join", "list", "--json").out)
    mine = next(t for t in listed if t["id"] == token_id)
    assert (mine["name"], mine["max_uses"], mine["revoked"]) == ("office", 2, False)
    assert command.split()[-1] not in logged_in("tokens", "join", "list").out
    table = logged_in("tokens", "join", "list").out
    assert any(line.split()[:2] == [token_id, "office"] and line.split()[-1] == "active" for line in table.splitlines())
    revoked = logged_in("tokens", "join", "revoke", token_id)
    assert revoked.code == 0 and f"join token {token_id} revoked" in revoked.out
    table = logged_in("tokens", "join", "list").out
    assert any(line.startswith(token_id) and line.split()[-1] == "revoked" for line in table.splitlines())
    history = json.loads(logged_in("events", "--json").out)
    mine = [e["kind"] for e in history if token_id in e["message"]]
    assert mine == ["token.join.created", "token.join.revoked"]
    again = logged_in("tokens", "join", "revoke", "0000beef")
    assert again.code == 1 and "no join token 0000beef" in again.err
    bad = logged_in("tokens", "join", "create", "--expires", "soon")
    assert bad.code == 1 and "'soon' is not a duration" in bad.err


def test_admin_tokens_create_list_revoke(served, logged_in):
    url, _, _ = served
    created = logged_in("tokens", "admin", "create", "--name", "ci-bot")
    assert created.code == 0, created.err
    token = next(w for w in created.out.split() if w.startswith("vcadm_"))
    assert f"vcapp login {url}`" in created.out and f"vcapp login {url} {token}" not in created.out
    token_id = token.split("_")[1]
    assert requests.get(url + "/v1/nodes", headers=bearer(token), timeout=5).status_code == 200
    listed = logged_in("tokens", "admin", "list").out
    assert any(line.split()[:2] == [token_id, "ci-bot"] for line in listed.splitlines())
    assert logged_in("tokens", "admin", "revoke", token_id).code == 0
    response = requests.get(url + "/v1/nodes", headers=bearer(token), timeout=5)
    assert response.status_code == 401 and "was revoked" in response.json()["error"]


def test_node_remove_and_the_event_it_leaves(served, logged_in):
    url, cluster, _ = served
    office = {"name": "office-9", "site": "office", "addr": "10.0.1.9", "api_url": "http://10.0.1.9:7180"}
    def post(body: dict) -> tuple[int, bytes]:
        response = requests.post(url + "/v1/join", json=body, timeout=5)
        return response.status_code, response.content
    assert sealed_join(post, cluster.join, office).status_code == 201
    result = logged_in("node", "remove", "office-9", "--yes")
    assert result.code == 0, result.err
    assert "machine office-9" in result.out
    assert "office-9" not in logged_in("nodes").out
    missing = logged_in("node", "remove", "office-9", "--yes")
    assert missing.code == 1 and "no machine named 'office-9'" in missing.err
    kinds = [e["kind"] for e in json.loads(logged_in("events", "--json").out) if e.get("node") == "office-9"]
    assert kinds == ["node.joined", "node.removed"]


def test_events_follow_prints_new_events_live(served, logged_in):
    url, cluster, _ = served
    env = dict(os.environ, HOME=str(logged_in.home))
    env = {k: v for k, v in env.items() if k not in ("VCAPP_URL", "VCAPP_TOKEN")}
    follower = subprocess.Popen([sys.executable, "-m", "vcapp", "events", "--follow", "--json", "-n", "1"],
                                env=env, stdout=subprocess.PIPE, text=True)
    try:
        first = json.loads(follower.stdout.readline())
        requests.post(url + "/v1/tokens/join", json={"name": "live"}, headers=bearer(cluster.admin), timeout=5)
        started = time.monotonic()
        new = json.loads(follower.stdout.readline())
        assert time.monotonic() - started < 3
        assert new["kind"] == "token.join.created" and new["id"] > first["id"]
    finally:
        follower.terminate()
        follower.wait(10)


def test_completion_scripts(vcapp_cli):
    for shell, marker in (("bash", "complete -o nosort -F _vcapp_completion vcapp"),
                          ("zsh", "#compdef vcapp"), ("fish", "complete --no-files --command vcapp")):
        result = vcapp_cli("completion", shell)
        assert result.code == 0 and marker in result.out, (shell, result.out[:200])
    assert vcapp_cli("completion", "tcsh").code == 2


def test_the_server_serves_with_threads_and_answers_health_without_a_token(served):
    url, _, proc = served
    health = requests.get(url + "/healthz", timeout=5).json()
    assert (health["ok"], health["node"]) == (True, "home-1")
    assert abs(health["time"] - time.time()) < 5  # its clock, which `vcapp doctor` compares
    assert requests.get(url + "/v1/nodes", timeout=5).status_code == 401
    assert proc.poll() is None


def test_edge_setup_refuses_a_bad_acme_ca_or_root_and_saves_nothing(vcapp_cli, tmp_path):
    key = tmp_path / "mesh.key"
    key.write_text("00" * 32)
    token = tmp_path / "edge.token"
    token.write_text("vcadm_0123abcd_" + "A" * 43)
    not_pem = tmp_path / "root.pem"
    not_pem.write_text("hello")
    data = tmp_path / "data"
    base = ["edge", "setup", "--mesh-key-file", str(key), "--domain", "apps.test", "--token-file", str(token)]
    env = {"VCAPP_DATA_DIR": str(data)}
    plain = vcapp_cli(*base, "--acme-ca", "http://ca.example/dir", extra_env=env)
    assert plain.code == 2 and "is not an ACME directory URL like https://" in plain.err
    bad_root = vcapp_cli(*base, "--acme-ca", "https://ca.example/dir", "--acme-ca-root", str(not_pem), extra_env=env)
    assert bad_root.code == 2 and "holds no PEM certificate" in bad_root.err
    assert not (data / "credentials").exists() and not (data / "edge").exists()
