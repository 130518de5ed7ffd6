"""`git push` with no token in any URL, argv or file but vcapp's own login: `vcapp login` sets
up `vcapp git-credential`, `vcapp apps create` adds the remote; real git, a real API (cheroot,
etcd), HOME in a temporary directory."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.cluster

EDGE_API = "https://api.apps.example.com"  # the test cluster's domain is apps.example.com
MACHINE_API = "http://10.0.0.1:7180"       # its machine home-1's record (tests/api/conftest.py FIRST)
GIT_TIMEOUT = 30.0


def git(cli, *args: str, cwd: Path | None = None, input: str | None = None,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """git as the person whose HOME the CLI uses; it never prompts."""
    return subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, text=True, timeout=GIT_TIMEOUT,
                          env=cli.env | {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": ""} | (env or {}))


def fill(cli, url: str) -> subprocess.CompletedProcess:
    """`git credential fill` for url, as git asks before a push."""
    parts = urlsplit(url)
    return git(cli, "credential", "fill", input=f"protocol={parts.scheme}\nhost={parts.netloc}\npath={parts.path.lstrip('/')}\n\n")


def work_tree(cli, path: Path) -> Path:
    path.mkdir()
    for args in (["init", "-q", "-b", "main"], ["-c", "user.name=t", "-c", "user.email=t@vcapp.test",
                                                 "commit", "-q", "--allow-empty", "-m", "first"]):
        assert git(cli, *args, cwd=path).returncode == 0
    return path


@pytest.fixture
def logged_in(served, vcapp_cli):
    url, cluster, _ = served
    result = vcapp_cli("login", url, cluster.admin)
    assert result.code == 0, result.err
    return vcapp_cli, result


def test_login_registers_the_helper_and_git_gets_the_token_only_for_the_cluster(served, logged_in):
    url, cluster, _ = served
    cli, result = logged_in
    assert f"git: pushes to {url} get the token from `vcapp git-credential`" in result.out
    assert f"git: pushes to {EDGE_API} get the token from `vcapp git-credential`" in result.out
    assert f"git: pushes to {MACHINE_API} get the token from `vcapp git-credential`" in result.out
    for cluster_url in (f"{url}/git/blog.git", f"{EDGE_API}/git/blog.git", f"{MACHINE_API}/git/blog.git"):
        got = fill(cli, cluster_url)
        assert got.returncode == 0, got.stderr
        assert f"username=admin\npassword={cluster.admin}\n" in got.stdout
    host, port = urlsplit(url).hostname, urlsplit(url).port
    for other in ("https://example.org/git/blog.git", f"http://{host}:{port + 1}/git/blog.git",
                  f"https://{host}:{port}/git/blog.git", "https://api.other.example.com/x.git"):
        got = fill(cli, other)
        assert got.returncode != 0 and cluster.admin not in got.stdout + got.stderr, other

    gitconfig = (cli.home / ".gitconfig").read_text()
    assert cluster.admin not in gitconfig
    assert f'[credential "{url}"]' in gitconfig and "git-credential" in gitconfig
    # git talks HTTP/1.1 to the edge, whose reloads break libcurl's HTTP/2 (vcapp/cli/gitconfig.py)
    version = git(cli, "config", "--global", "--get-urlmatch", "http.version", f"{EDGE_API}/git/blog.git")
    assert version.stdout.strip() == "HTTP/1.1"

    again = cli("login", url, cluster.admin)
    assert again.code == 0 and f"git: {url} already gets the token from `vcapp git-credential`" in again.out
    assert (cli.home / ".gitconfig").read_text() == gitconfig  # idempotent


def test_the_helper_answers_from_the_login_file_not_argv_and_store_keeps_nothing(served, logged_in, tmp_path):
    url, cluster, _ = served
    cli, _ = logged_in
    helper = git(cli, "config", "--global", "--get-all", f"credential.{url}.helper").stdout.splitlines()
    assert helper[0] == "" and helper[1].startswith("!") and helper[1].endswith(" git-credential")
    ask = "protocol=http\nhost=" + urlsplit(url).netloc + "\n\n"
    assert cli("git-credential", "get", input=ask).out == f"username=admin\npassword={cluster.admin}\n"
    assert cli("git-credential", "get", input="protocol=https\nhost=example.org\n\n").out == ""
    for op in ("store", "erase"):
        done = cli("git-credential", op, input=ask.rstrip("\n") + f"\nusername=admin\npassword=other\n\n")
        assert done.code == 0 and done.out == ""
    saved = json.loads((cli.home / ".config" / "vcapp" / "config.json").read_text())
    assert saved == {"url": url, "token": cluster.admin, "git_urls": [EDGE_API, MACHINE_API]}
    logged_out = cli("git-credential", "get", input=ask, extra_env={"HOME": str(tmp_path)})
    assert logged_out.code == 0 and logged_out.out == ""


def test_apps_create_adds_a_remote_without_a_token_and_git_pushes_through_it(served, logged_in, tmp_path):
    url, cluster, _ = served
    cli, _ = logged_in
    git(cli, "config", "--global", "credential.helper", "store")  # a person's general helper, left alone
    again = cli("login", url, cluster.admin)  # ... and put before ours again, so it is never told the token
    assert again.code == 0 and f"git: pushes to {url} get the token" in again.out, again.out
    repo = work_tree(cli, tmp_path / "blog")
    made = cli("apps", "create", "blog", cwd=repo)
    assert made.code == 0, made.err
    assert f"added git remote cluster -> {url}/git/blog.git" in made.out
    assert "deploy it: git push cluster main" in made.out
    remote = git(cli, "remote", "get-url", "cluster", cwd=repo).stdout.strip()
    assert remote == f"{url}/git/blog.git"
    assert cluster.admin not in (repo / ".git" / "config").read_text()

    # A push to a branch that does not deploy: git authenticates with the helper alone.
    pushed = git(cli, "push", "cluster", "main:work", cwd=repo, env={"GIT_TRACE": "1"})
    assert pushed.returncode == 0, pushed.stderr
    assert "git-credential get" in pushed.stderr  # git ran the helper ...
    assert cluster.admin not in pushed.stderr     # ... and no command line it ran held the token
    listed = git(cli, "ls-remote", "cluster", cwd=repo)
    assert listed.returncode == 0 and "refs/heads/work" in listed.stdout, listed.stderr
    assert cluster.admin not in (cli.home / ".gitconfig").read_text()
    credentials = cli.home / ".git-credentials"
    assert not credentials.exists() or cluster.admin not in credentials.read_text()
    assert git(cli, "config", "--global", "credential.helper").stdout.strip() == "store"


def test_an_existing_remote_elsewhere_is_left_and_outside_a_work_tree_the_command_is_shown(served, logged_in,
                                                                                        tmp_path):
    url, cluster, _ = served
    cli, _ = logged_in
    repo = work_tree(cli, tmp_path / "shop")
    assert git(cli, "remote", "add", "cluster", "https://elsewhere.example.com/git/shop.git", cwd=repo).returncode == 0
    made = cli("apps", "create", "shop", cwd=repo)
    assert made.code == 0, made.err
    assert ("git remote cluster already points at https://elsewhere.example.com/git/shop.git; left as it is. "
            f"To push this app there instead: git remote set-url cluster {url}/git/shop.git") in made.out
    assert f"deploy it: git push {url}/git/shop.git main" in made.out
    assert git(cli, "remote", "get-url", "cluster", cwd=repo).stdout.strip() == "https://elsewhere.example.com/git/shop.git"

    other = cli("apps", "create", "cart", "--remote", "vc", cwd=repo)
    assert other.code == 0 and f"added git remote vc -> {url}/git/cart.git" in other.out
    again = cli("apps", "create", "cart2", "--no-remote", cwd=repo)
    assert again.code == 0 and "remote" not in again.out and f"git push {url}/git/cart2.git main" in again.out

    outside = tmp_path / "plain"
    outside.mkdir()
    shown = cli("apps", "create", "notes", cwd=outside)
    assert shown.code == 0
    assert f"not in a git work tree; in the app's repository run: git remote add cluster {url}/git/notes.git" in shown.out


def test_login_takes_the_token_on_standard_input_for_scripts(served, vcapp_cli):
    url, cluster, _ = served
    result = vcapp_cli("login", url, "--token-stdin", input=cluster.admin + "\n")
    assert result.code == 0, result.err
    assert "logged in to cluster" in result.out and fill(vcapp_cli, f"{url}/git/blog.git").returncode == 0
    both = vcapp_cli("login", url, cluster.admin, "--token-stdin", input=cluster.admin)
    assert both.code != 0 and "not both" in both.err
    empty = vcapp_cli("login", url, "--token-stdin", input="")
    assert empty.code != 0 and "standard input held no token" in empty.err
