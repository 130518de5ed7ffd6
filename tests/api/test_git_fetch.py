"""Fetching an app's repository from a machine's API as the other machines do (vcapp/state/reposync.py:
dulwich's HTTP client, the machine sync credential), once they already hold its older commits:
the request then carries `have` lines, which dulwich's server answers before it has read the
whole request. Real git pushes, the API under its real server, real etcd."""

from __future__ import annotations

import pytest
from dulwich.client import HttpGitClient
from dulwich.repo import Repo

from tests.api.conftest import CLUSTER_KEY
from tests.api.test_git_login import git, logged_in, work_tree  # noqa: F401 (a fixture)
from vcapp.state import reposync

pytestmark = pytest.mark.cluster


def commit(cli, repo, n: int) -> str:
    (repo / f"note-{n}.txt").write_text(f"note {n}\n" * 50)
    assert git(cli, "add", ".", cwd=repo).returncode == 0
    assert git(cli, "-c", "user.name=t", "-c", "user.email=t@vcapp.test", "commit", "-qm", f"note {n}",
               cwd=repo).returncode == 0
    pushed = git(cli, "push", "cluster", "main:work", cwd=repo)
    assert pushed.returncode == 0, pushed.stderr
    return git(cli, "rev-parse", "HEAD", cwd=repo).stdout.strip()


def test_a_machine_that_holds_older_commits_fetches_the_new_ones(served, logged_in, tmp_path):
    url, cluster, _ = served
    cli, _ = logged_in
    repo = work_tree(cli, tmp_path / "diary")
    assert cli("apps", "create", "diary", cwd=repo).code == 0
    copy = Repo.init_bare(str(tmp_path / "copy.git"), mkdir=True)
    client = HttpGitClient(f"{url}/git/", username=reposync.SYNC_USER,
                           password=reposync.sync_secret(CLUSTER_KEY), quiet=True)
    for n in range(3):
        head = commit(cli, repo, n)
        fetched = client.fetch("diary.git", copy)  # from the second round on, with haves
        assert fetched.refs[b"refs/heads/work"].decode() == head
        assert head.encode() in copy.object_store
        copy.refs[b"refs/heads/work"] = head.encode()
