"""A real `git` client against the git server under gunicorn (gthread) on 127.0.0.1.

The on_push callable is the scripted one in scripted_deploy.py; everything between the git
client and that callable (HTTP, auth, dulwich, side-band streaming, ref updates) is real.
"""

from __future__ import annotations

import os
import re
import time
import urllib.error
import urllib.request

import pytest

from .conftest import ZERO, Git

pytestmark = pytest.mark.cluster

LIVE_LINE_SECONDS = 10.0  # line 1 crosses loopback in milliseconds; 10 s means "never came"


def remote_lines(stderr: str) -> list[str]:
    return [line.strip() for line in re.findall(r"^remote: (.*)$", stderr, re.M)]


def test_clone_empty_app_then_push_main_deploys_the_pushed_tree(git_server, git, tmp_path):
    app = git_server.new_app()
    work = git.workdir(tmp_path, git_server.remote(app))
    sha = git.commit_files(work, {"app.py": "print('hi')\n", "static/site.css": "body{}\n"})

    started = time.monotonic()
    push = git("push", "origin", "main", cwd=work)
    elapsed = time.monotonic() - started

    assert remote_lines(push.stderr)[0] == f"-----> Deploying {app} {sha[:7]} (main), pushed by alice"
    steps = [line for line in remote_lines(push.stderr) if not line.startswith("stamp")]
    assert steps[1:4] == ["building image", "pushing image", "starting release"]
    assert re.fullmatch(r"-----> Released v\d+", steps[4])
    assert steps[5:] == [f"https://{app}.apps.example.test"]
    assert "main -> main" in push.stderr
    [call] = git_server.calls(app)
    assert (call["ref"], call["old_sha"], call["new_sha"], call["who"]) == ("refs/heads/main", ZERO, sha, "alice")
    assert call["files"] == {"app.py": "print('hi')\n", "static/site.css": "body{}\n"}
    assert not os.path.exists(call["source_dir"]), "the checkout is a temp dir, removed after the deploy"
    assert git_server.refs(app) == {"refs/heads/main": sha}
    print(f"\npush of a 2-file commit, round trip with deploy: {elapsed * 1000:.0f} ms")


def test_log_lines_reach_the_pusher_while_the_deploy_is_still_running(git_server, git, tmp_path, live_push):
    app = git_server.new_app()
    work = git.workdir(tmp_path, git_server.remote(app))
    git.commit_files(work, {"app.py": "x = 1\n"})
    git_server.set_mode("gate")

    push = live_push(work, "origin", "main")
    seen_at, line = push.wait_line(r"^remote: line 1 ", LIVE_LINE_SECONDS)
    assert push.proc.poll() is None, "push ended before the deploy was allowed to finish"
    assert not push._find("line 2"), "line 2 must not exist yet: the deploy is blocked on the gate"
    latency = seen_at - float(line.split()[3])
    (git_server.ctl / "gate-open").touch()

    assert push.finish() == 0, push.text()
    lines = remote_lines(push.text())
    assert lines.index(next(x for x in lines if x.startswith("line 1"))) < lines.index("line 2 after the gate")
    assert re.fullmatch(r"-----> Released v\d+", lines[-2])
    print(f"\nlog(line) -> pusher's stderr: {latency * 1000:.1f} ms")


def test_failed_deploy_rejects_the_ref_and_a_later_push_deploys(git_server, git, tmp_path):
    app = git_server.new_app()
    work = git.workdir(tmp_path, git_server.remote(app))
    first = git.commit_files(work, {"app.py": "v = 1\n"})
    git("push", "origin", "main", cwd=work)
    second = git.commit_files(work, {"requirements.txt": "nosuchpkg\n"})
    git_server.set_mode("fail")

    push = git("push", "origin", "main", cwd=work, check=False)

    assert push.returncode != 0
    assert remote_lines(push.stderr)[1:] == [
        "Collecting nosuchpkg", "ERROR: No matching distribution found for nosuchpkg",
        "!      deploy failed: pip install exited 1 (see the lines above)",
        f"!      {app} keeps running its previous release; main was not updated"]
    assert "! [remote rejected] main -> main (deploy failed: pip install exited 1" in push.stderr
    assert git_server.refs(app) == {"refs/heads/main": first}

    git_server.set_mode("release")
    git("push", "origin", "main", cwd=work)
    assert git_server.calls(app)[-1]["old_sha"] == first
    assert git_server.refs(app) == {"refs/heads/main": second}


def test_a_failed_first_push_does_not_speak_of_a_previous_release(git_server, git, tmp_path):
    app = git_server.new_app()
    work = git.workdir(tmp_path, git_server.remote(app))
    git.commit_files(work, {"requirements.txt": "nosuchpkg\n"})
    git_server.set_mode("fail")

    push = git("push", "origin", "main", cwd=work, check=False)

    assert push.returncode != 0
    assert remote_lines(push.stderr)[-1] == f"!      {app} was not deployed by this push; main was not created"
    assert "previous release" not in push.stderr
    assert git_server.refs(app) == {}


def test_push_to_another_branch_is_stored_without_a_build(git_server, git, tmp_path):
    app = git_server.new_app()
    work = git.workdir(tmp_path, git_server.remote(app))
    git("checkout", "-q", "-b", "feature", cwd=work)
    sha = git.commit_files(work, {"app.py": "wip\n"})

    push = git("push", "origin", "feature", cwd=work)

    assert remote_lines(push.stderr) == [
        "stored refs/heads/feature; not deploying: only pushes to main or master deploy"]
    assert git_server.refs(app) == {"refs/heads/feature": sha}
    assert git_server.calls(app) == []


def test_push_with_nothing_to_build_shows_the_deploy_error(git_server, git, tmp_path):
    app = git_server.new_app()
    work = git.workdir(tmp_path, git_server.remote(app))
    git("commit", "-q", "--allow-empty", "-m", "empty", cwd=work)

    push = git("push", "origin", "main", cwd=work, check=False)

    assert push.returncode != 0
    assert ("!      deploy failed: nothing to build: the pushed tree is empty; add a Dockerfile or app files"
            in remote_lines(push.stderr))
    assert git_server.refs(app) == {}


def test_a_crashing_deploy_is_a_readable_rejection(git_server, git, tmp_path):
    app = git_server.new_app()
    work = git.workdir(tmp_path, git_server.remote(app))
    git.commit_files(work, {"app.py": "1\n"})
    git_server.set_mode("crash")

    push = git("push", "origin", "main", cwd=work, check=False)

    assert push.returncode != 0
    assert ("main -> main (deploy failed: internal error KeyError: 'no-such-key' "
            "(the server log has the traceback))") in push.stderr
    assert git_server.refs(app) == {}


def test_force_push_to_main_is_refused_and_main_stays(git_server, git, tmp_path):
    app = git_server.new_app()
    work = git.workdir(tmp_path, git_server.remote(app))
    git.commit_files(work, {"app.py": "1\n"})
    git.commit_files(work, {"app.py": "2\n"})
    deployed = git.head(work)
    git("push", "origin", "main", cwd=work)
    git("reset", "-q", "--hard", "HEAD~1", cwd=work)
    git.commit_files(work, {"app.py": "other\n"})
    calls = len(git_server.calls(app))

    push = git("push", "--force", "origin", "main", cwd=work, check=False)

    assert push.returncode != 0
    assert f"non-fast-forward push to main refused: the running release is built from {deployed[:7]}" in push.stderr
    assert f"`vcapp rollback {app} N`" in push.stderr
    assert git_server.refs(app) == {"refs/heads/main": deployed}
    assert len(git_server.calls(app)) == calls


def test_second_push_while_a_deploy_runs_is_told_to_wait(git_server, git, tmp_path, live_push):
    app = git_server.new_app()
    one = git.workdir(tmp_path, git_server.remote(app))
    two = git.workdir(tmp_path, git_server.remote(app))
    git.commit_files(one, {"app.py": "one\n"})
    git.commit_files(two, {"app.py": "two\n"})
    git_server.set_mode("gate")
    first = live_push(one, "origin", "main")
    first.wait_line(r"^remote: line 1 ", LIVE_LINE_SECONDS)

    second = git("push", "origin", "main", cwd=two, check=False)
    (git_server.ctl / "gate-open").touch()

    assert second.returncode != 0
    assert f"another push to {app} is deploying right now: wait for it to finish, then push again" in second.stderr
    assert first.finish() == 0, first.text()
    assert git_server.refs(app) == {"refs/heads/main": git.head(one)}


def test_quiet_deploy_sends_keepalives_and_succeeds(git_server, git, tmp_path):
    app = git_server.new_app()
    work = git.workdir(tmp_path, git_server.remote(app))
    sha = git.commit_files(work, {"app.py": "1\n"})
    git_server.set_mode("quiet")

    push = Git(git.env | {"GIT_TRACE_PACKET": "1"})("push", "origin", "main", cwd=work)

    assert git_server.refs(app) == {"refs/heads/main": sha}
    assert re.search(r"^remote: -----> Released v\d+", push.stderr, re.M)
    keepalives = re.findall(r"sideband< \\1$", push.stderr, re.M)  # empty band-1 packets
    assert len(keepalives) >= 3, push.stderr[-2000:]


def test_large_push_sent_chunked_is_received(git_server, git, tmp_path):
    app = git_server.new_app()
    work = git.workdir(tmp_path, git_server.remote(app))
    (work / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024))  # > http.postBuffer (1 MiB): chunked
    sha = git.commit_files(work, {"app.py": "big\n"})

    git("push", "origin", "main", cwd=work)

    assert git_server.refs(app) == {"refs/heads/main": sha}
    assert set(git_server.calls(app)[-1]["files"]) == {"app.py", "blob.bin"}


def test_wrong_token_gets_401_and_nothing_is_stored(git_server, git, tmp_path):
    app = git_server.new_app()
    work = git.workdir(tmp_path, git_server.remote(app))
    git.commit_files(work, {"app.py": "1\n"})

    push = git("push", git_server.remote(app, token="not-the-token"), "main", cwd=work, check=False)

    assert push.returncode != 0
    assert "remote: invalid admin token: check it with `vcapp login`" in push.stderr
    assert "Authentication failed" in push.stderr
    assert git_server.refs(app) == {}
    assert git_server.calls(app) == []
    for path in ("/info/refs?service=git-receive-pack", "/info/refs?service=git-upload-pack", "/HEAD"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{git_server.url}/{app}.git{path}", timeout=5)
        assert err.value.code == 401
        assert err.value.headers["WWW-Authenticate"] == 'Basic realm="vcapp"'


def test_fetch_and_clone_need_the_token_too(git_server, git, tmp_path):
    app = git_server.new_app()
    work = git.workdir(tmp_path, git_server.remote(app))
    sha = git.commit_files(work, {"app.py": "secret sauce\n"})
    git("push", "origin", "main", cwd=work)

    anonymous = git("clone", git_server.remote(app, token=None), str(tmp_path / "anon"), cwd=tmp_path, check=False)
    wrong = git("clone", git_server.remote(app, token="nope"), str(tmp_path / "wrong"), cwd=tmp_path, check=False)
    fetch = git("fetch", git_server.remote(app, token="nope"), cwd=work, check=False)
    good = git("clone", "-q", git_server.remote(app), str(tmp_path / "good"), cwd=tmp_path)

    assert anonymous.returncode != 0 and "could not read Username" in anonymous.stderr
    assert wrong.returncode != 0 and "Authentication failed" in wrong.stderr
    assert fetch.returncode != 0 and "Authentication failed" in fetch.stderr
    assert not (tmp_path / "anon" / "app.py").exists() and not (tmp_path / "wrong" / "app.py").exists()
    assert good.returncode == 0 and (tmp_path / "good" / "app.py").read_text() == "secret sauce\n"
    assert git.head(tmp_path / "good") == sha


def test_unknown_app_is_a_clear_error(git_server, git, tmp_path):
    work = git.workdir(tmp_path, git_server.remote(git_server.new_app()))
    git.commit_files(work, {"app.py": "1\n"})

    push = git("push", git_server.remote("nosuchapp"), "main", cwd=work, check=False)
    bad_name = git("push", git_server.remote("Bad_Name"), "main", cwd=work, check=False)

    assert push.returncode != 0
    assert "remote: no app named nosuchapp: create it with `vcapp apps create nosuchapp`" in push.stderr
    assert bad_name.returncode != 0 and "'Bad_Name' is not a valid app name" in bad_name.stderr
    assert not (git_server.root / "nosuchapp.git").exists()


def test_the_token_never_reaches_the_server_log(git_server, git, tmp_path):
    app = git_server.new_app()
    work = git.workdir(tmp_path, git_server.remote(app))
    git.commit_files(work, {"app.py": "1\n"})
    git("push", "origin", "main", cwd=work)
    git("push", git_server.remote(app, token="wrong-token-zzz"), "main", cwd=work, check=False)

    log = git_server.log_path.read_text()
    assert "POST /git/" + app + ".git/git-receive-pack" in log, "the access log is on, so the check means something"
    assert git_server.token not in log and "wrong-token-zzz" not in log


def test_pusher_hanging_up_mid_deploy_does_not_stop_it(git_server, git, tmp_path, live_push):
    app = git_server.new_app()
    work = git.workdir(tmp_path, git_server.remote(app))
    sha = git.commit_files(work, {"app.py": "1\n"})
    git_server.set_mode("gate")
    push = live_push(work, "origin", "main")
    push.wait_line(r"^remote: line 1 ", LIVE_LINE_SECONDS)

    push.hang_up()  # Ctrl-C while the build runs
    (git_server.ctl / "gate-open").touch()

    deadline = time.monotonic() + LIVE_LINE_SECONDS
    while git_server.refs(app) != {"refs/heads/main": sha} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert git_server.refs(app) == {"refs/heads/main": sha}, "the release went live, so main must point at it"


def test_master_works_like_main_and_clones_check_it_out(git_server, git, tmp_path):
    app = git_server.new_app()
    work = git.workdir(tmp_path, git_server.remote(app))
    sha = git.commit_files(work, {"app.py": "1\n"})

    push = git("push", "origin", "main:master", cwd=work)
    clone = git("clone", git_server.remote(app), str(tmp_path / "c"), cwd=tmp_path)

    assert "-----> Released v" in push.stderr
    assert git_server.calls(app)[-1]["ref"] == "refs/heads/master"
    assert "warning" not in clone.stderr, clone.stderr
    assert git.head(tmp_path / "c") == sha


def test_atomic_push_is_refused_by_the_client(git_server, git, tmp_path):
    app = git_server.new_app()
    work = git.workdir(tmp_path, git_server.remote(app))
    git.commit_files(work, {"app.py": "1\n"})

    push = git("push", "--atomic", "origin", "main", "main:feature", cwd=work, check=False)

    assert push.returncode != 0 and "does not support --atomic" in push.stderr
    assert git_server.refs(app) == {} and git_server.calls(app) == []
