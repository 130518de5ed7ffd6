"""The git app served directly (not mounted under /git) by werkzeug's threaded server, with an
in-process on_push that streams a real subprocess's output from a reader thread, the way a
builder running buildah would."""

from __future__ import annotations

import re
import subprocess
import threading

import pytest
from werkzeug.serving import make_server

from gitserver.push import PushResult
from gitserver.repos import create_repo
from gitserver.wsgi import GitConfig, create_git_app

pytestmark = pytest.mark.cluster

BUILD_SECONDS = 20.0  # the scripted "build" below takes milliseconds


def streaming_build(*, app, ref, old_sha, new_sha, source_dir, log, who):
    """Run a shell 'build' over the checked-out files, streaming stdout from a reader thread."""
    proc = subprocess.Popen(["sh", "-c", "for f in $(ls | sort); do echo \"step: $f\"; done; echo done"],
                            cwd=source_dir, stdout=subprocess.PIPE, text=True)
    reader = threading.Thread(target=lambda: [log(line) for line in proc.stdout])
    reader.start()
    reader.join(BUILD_SECONDS)
    proc.wait(BUILD_SECONDS)
    return PushResult.released(7, f"https://{app}.apps.example.test", message=f"{new_sha[:7]} by {who}")


@pytest.fixture
def werkzeug_git(tmp_path):
    config = GitConfig(root=tmp_path / "repos", authenticate=lambda t: "bob" if t == "wz-token" else None,
                       on_push=streaming_build)
    server = make_server("127.0.0.1", 0, create_git_app(config), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield config, f"http://u:wz-token@127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


def test_unmounted_app_under_werkzeug_streams_a_builders_output(werkzeug_git, git, tmp_path):
    config, base = werkzeug_git
    create_repo(config.root, "shop")
    work = git.workdir(tmp_path, f"{base}/shop.git")
    sha = git.commit_files(work, {"b.txt": "b", "a.txt": "a"})

    push = git("push", "origin", "main", cwd=work)

    lines = [x.strip() for x in re.findall(r"^remote: (.*)$", push.stderr, re.M)]
    assert lines == [f"-----> Deploying shop {sha[:7]} (main), pushed by bob",
                     "step: a.txt", "step: b.txt", "done",
                     f"-----> Released v7: {sha[:7]} by bob", "https://shop.apps.example.test"]
    clone = git("clone", "-q", f"{base}/shop.git", str(tmp_path / "again"), cwd=tmp_path)
    assert clone.returncode == 0 and (tmp_path / "again" / "a.txt").read_text() == "a"


def test_a_failing_token_check_is_a_503_with_a_reason(tmp_path, git):
    def authenticate(token):
        raise ConnectionError("etcd unreachable")

    config = GitConfig(root=tmp_path / "repos", authenticate=authenticate, on_push=streaming_build)
    create_repo(config.root, "shop")
    server = make_server("127.0.0.1", 0, create_git_app(config), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        clone = git("clone", f"http://u:t@127.0.0.1:{server.server_port}/shop.git", str(tmp_path / "c"),
                    cwd=tmp_path, check=False)
    finally:
        server.shutdown()
        thread.join(10)

    assert clone.returncode != 0
    assert "remote: cannot check the token right now (ConnectionError): try again in a moment" in clone.stderr
