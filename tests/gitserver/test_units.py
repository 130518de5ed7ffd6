"""Pure pieces of the git server: header parsing, app names, status lines, tree checkout."""

from __future__ import annotations

import base64
import os
import stat

import pytest
from dulwich.objects import Blob, Commit, Tree

from gitserver.auth import basic_password
from gitserver.push import branch_of, one_line
from gitserver.repos import AppExists, InvalidAppName, NoSuchApp, RepoError, checkout_tree, create_repo, open_repo

pytestmark = pytest.mark.unit


def basic(user_pass: str) -> str:
    return "Basic " + base64.b64encode(user_pass.encode()).decode()


@pytest.mark.parametrize("header, password", [
    (basic("x:tok-123"), "tok-123"),
    (basic(":tok:with:colons"), "tok:with:colons"),
    ("basic " + base64.b64encode(b"u:p").decode(), "p"),
    (None, None),
    ("", None),
    ("Bearer tok-123", None),
    ("Basic !!!not-base64", None),
    (basic("no-colon"), None),
    (basic("user:"), None),
])
def test_basic_password(header, password):
    assert basic_password(header) == password


@pytest.mark.parametrize("name", ["Blog", "-blog", "blog-", "a_b", "a.b", "", "x" * 64, "../etc"])
def test_invalid_app_names_are_refused_before_touching_disk(tmp_path, name):
    with pytest.raises(InvalidAppName, match="lowercase letters"):
        create_repo(tmp_path, name)
    assert list(tmp_path.iterdir()) == []


def test_create_repo_makes_a_bare_repo_on_main_once(tmp_path):
    path = create_repo(tmp_path / "repos", "blog")
    assert path == tmp_path / "repos" / "blog.git"
    assert (path / "HEAD").read_text() == "ref: refs/heads/main\n"
    with pytest.raises(AppExists):
        create_repo(tmp_path / "repos", "blog")
    with pytest.raises(NoSuchApp, match="no app named shop: create it with `vcapp apps create shop`"):
        open_repo(tmp_path / "repos", "shop")


def test_status_reason_is_one_bounded_line():
    assert one_line("deploy failed:\n  step 3\tbroke ") == b"deploy failed: step 3 broke"
    assert len(one_line("x " * 5000)) == 1000


def test_branch_of():
    assert branch_of(b"refs/heads/main") == "main"
    assert branch_of(b"refs/heads/feat/x") == "feat/x"
    assert branch_of(b"refs/tags/v1") is None


def test_checkout_tree_writes_files_modes_and_symlinks(tmp_path):
    create_repo(tmp_path, "blog")
    repo = open_repo(tmp_path, "blog")
    app, run, css = Blob.from_string(b"print(1)\n"), Blob.from_string(b"#!/bin/sh\n"), Blob.from_string(b"a{}")
    link = Blob.from_string(b"app.py")
    sub = Tree()
    sub.add(b"site.css", 0o100644, css.id)
    tree = Tree()
    tree.add(b"app.py", 0o100644, app.id)
    tree.add(b"run.sh", 0o100755, run.id)
    tree.add(b"main.py", 0o120000, link.id)
    tree.add(b"static", 0o040000, sub.id)
    commit = Commit()
    commit.tree = tree.id
    commit.author = commit.committer = b"A <a@b>"
    commit.author_time = commit.commit_time = 0
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = b"m"
    for obj in (app, run, css, link, sub, tree, commit):
        repo.object_store.add_object(obj)

    dest = checkout_tree(repo, commit.id, tmp_path / "out" / "src")

    assert sorted(p.name for p in dest.iterdir()) == ["app.py", "main.py", "run.sh", "static"]
    assert (dest / "static" / "site.css").read_bytes() == b"a{}"
    assert os.stat(dest / "run.sh").st_mode & stat.S_IXUSR
    assert not os.stat(dest / "app.py").st_mode & stat.S_IXUSR
    assert os.readlink(dest / "main.py") == "app.py"
    assert not (tmp_path / "out" / "src.index").exists()


def test_checkout_tree_never_writes_outside_dest(tmp_path):
    create_repo(tmp_path, "evil")
    repo = open_repo(tmp_path, "evil")
    payload = Blob.from_string(b"pwned")
    inner = Tree()
    inner.add(b"escaped", 0o100644, payload.id)
    hooks = Tree()
    hooks.add(b"post-checkout", 0o100755, payload.id)
    tree = Tree()
    tree.add(b"..", 0o040000, inner.id)
    tree.add(b".git", 0o040000, hooks.id)
    tree.add(b"ok.txt", 0o100644, payload.id)
    commit = Commit()
    commit.tree = tree.id
    commit.author = commit.committer = b"A <a@b>"
    commit.author_time = commit.commit_time = 0
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = b"m"
    for obj in (payload, inner, hooks, tree, commit):
        repo.object_store.add_object(obj)

    with pytest.raises(RepoError, match="cannot be checked out safely .* remove it from the commit and push again"):
        checkout_tree(repo, commit.id, tmp_path / "out" / "src")

    assert not (tmp_path / "out" / "escaped").exists()
    assert not (tmp_path / "out" / "src" / ".git").exists()
