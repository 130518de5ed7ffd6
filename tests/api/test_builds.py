"""Builds are records: every push is kept with who, where, how long, what became of it and
its whole log (bounded), listed by the API and `vcapp builds`, and gone with its app.

Real parts: etcd, the admin API (Flask test client), the deploy hook (vcapp/deploy/pipeline.py
Deployer) and buildremote.build_somewhere choosing over the real cluster state; only the
image build itself (buildah) is a stand-in that prints lines and fails or succeeds."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gitserver import DeployError
from tests.api.conftest import bearer
from vcapp.cli import builds as builds_cli
from vcapp.deploy import pipeline
from vcapp.machine import NodeConfig
from vcapp.state import builds, events, keys

pytestmark = pytest.mark.cluster

HOME_1 = NodeConfig(cluster="acme", name="home-1", site="home", addr="10.0.0.1")
SHA = "889e2a5" + "0" * 33


def push(store, tmp_path, app: str = "blog", files: dict | None = None, sha: str = SHA):
    """One push through the real deploy hook; (result or DeployError, the lines the pusher saw)."""
    src = tmp_path / f"src-{sha[:7]}"
    src.mkdir(exist_ok=True)
    for name, text in (files or {"app.py": "print('hi')\n"}).items():
        (src / name).write_text(text)
    lines: list[str] = []
    hook = pipeline.Deployer(lambda: store, lambda: HOME_1)
    try:
        result = hook(app=app, ref="refs/heads/main", old_sha="0" * 40, new_sha=sha, source_dir=src,
                      log=lines.append, who="initial")
    except DeployError as e:
        result = e
    return result, lines


def failing_build(store, node, app, number, source, log):
    for i in range(200):
        log(f"STEP 3/4: RUN pip install -r requirements.txt ({i})")
    log("ERROR: No matching distribution found for nosuchpkg")
    raise DeployError("build failed (buildah exited 1): fix the failing step shown above and push again")


def good_build(store, node, app, number, source, log):
    log("STEP 1/1: FROM scratch")
    return {"image": f"10.0.0.1:5000/apps/{app}:{number}", "digest": "sha256:" + "a" * 64, "language": "static",
            "seconds": 1.0, "built_on": node.name}


@pytest.fixture
def admin(api, cluster):
    headers = bearer(cluster.admin)
    assert api.post("/v1/apps", json={"name": "blog"}, headers=headers).status_code == 201
    return headers


def test_a_failed_build_is_recorded_with_its_log_listed_and_an_event(api, cluster, admin, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "build_here", failing_build)

    error, lines = push(cluster.store, tmp_path)

    assert isinstance(error, DeployError)
    assert error.kept == "blog has no earlier release, so nothing of it runs yet"  # a first push
    assert lines[0] == "-----> build 1 of blog (`vcapp builds log blog 1` shows this log again)"
    assert lines[2].startswith("-----> building on home-1 (")  # the log names the machine that builds
    listed = api.get("/v1/apps/blog/builds", headers=admin)
    assert listed.status_code == 200
    (build,) = listed.json["builds"]
    assert (build["number"], build["sha"], build["ref"], build["who"]) == (1, SHA, "refs/heads/main", "initial")
    assert (build["result"], build["stage"], build["built_on"], build["receiver"]) == ("failed", "build",
                                                                                       "home-1", "home-1")
    assert build["reason"].startswith("build failed (buildah exited 1)")
    assert build["ended"] >= build["started"] and build["seconds"] is not None and build["release"] is None
    assert build["tail"][-2:] == ["ERROR: No matching distribution found for nosuchpkg",
                                  "!      " + build["reason"]]  # the failing step's last lines
    assert "log" not in build  # a listing reads no log

    whole = api.get("/v1/apps/blog/builds/latest", headers=admin).json
    assert whole["number"] == 1 and whole["cut"] == 0
    assert whole["log"].splitlines()[0] == f"-----> push of {SHA[:7]} to refs/heads/main by initial, received on home-1"
    assert whole["log"].splitlines()[1:] == lines + ["!      " + build["reason"]]
    assert api.get("/v1/apps/blog/builds/1", headers=admin).json["log"] == whole["log"]

    (event,) = [e for e in events.latest(cluster.store) if e["kind"] == "build.failed"]
    assert event["app"] == "blog" and event["build"] == 1
    assert "`vcapp builds log blog 1`" in event["message"] and "buildah exited 1" in event["message"]


def test_a_bad_vcapp_toml_is_a_refused_build_and_a_good_one_succeeds_with_its_release(
        api, cluster, admin, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "build_here", good_build)
    refused, _ = push(cluster.store, tmp_path, files={"vcapp.toml": "port = 'eighty'\n"}, sha="1" * 40)
    released, lines = push(cluster.store, tmp_path, files={"vcapp.toml": "count = 0\n"}, sha="2" * 40)

    assert isinstance(refused, DeployError) and released.ok and released.release == 1
    first, second = api.get("/v1/apps/blog/builds", headers=admin).json["builds"]
    assert (first["result"], first["stage"], first["built_on"]) == ("refused", "config", None)
    assert "port" in first["reason"]
    assert (second["result"], second["stage"], second["release"], second["built_on"]) == ("succeeded", None, 1,
                                                                                        "home-1")
    assert second["tail"] == []
    assert api.get("/v1/apps/blog/builds/2", headers=admin).json["log"].splitlines()[-1].startswith(
        "-----> Released v1")
    assert [e["build"] for e in events.latest(cluster.store) if e["kind"] == "build.failed"] == [1]
    # A later failure says what keeps running.
    monkeypatch.setattr(pipeline, "build_here", failing_build)
    error, _ = push(cluster.store, tmp_path, sha="3" * 40)
    assert error.kept == "blog keeps running v1"


def test_logs_and_builds_are_bounded_oldest_pruned(cluster, admin, api):
    book = builds.LogBook(lambda line: None)
    for i in range(5000):
        book(f"line {i:05d} " + "x" * 40)
    text = book.text()
    assert len(text.encode()) <= builds.MAX_LOG_BYTES + 200  # well under etcd's 1.5 MiB request limit
    assert text.startswith("line 00000 ") and text.endswith("line 04999 " + "x" * 40)
    assert f"[... {book.cut} lines cut" in text and book.cut > 3000
    book("a" * 10 * builds.MAX_LINE)  # one endless line is cut to MAX_LINE
    assert book.lines()[-1] == "a" * builds.MAX_LINE

    for n in range(builds.KEEP + 3):
        number = builds.start(cluster.store, "blog", sha=f"{n:040d}", ref="refs/heads/main", who="initial",
                              receiver="home-1")
        builds.finish(cluster.store, "blog", number, builds.FAILED, book, reason="no", stage="build")
    kept = api.get("/v1/apps/blog/builds", headers=admin).json["builds"]
    assert [b["number"] for b in kept] == list(range(4, builds.KEEP + 4))
    assert cluster.store.count(keys.build_log("blog")) == builds.KEEP
    assert api.get("/v1/apps/blog/builds/3", headers=admin).status_code == 404
    biggest = max(len(json.dumps(e.value)) for e in cluster.store.list(keys.build_log("blog")))
    assert biggest < 100 * 1024


def test_destroy_removes_the_builds_and_bad_names_are_refused(api, cluster, admin, node_dir):
    book = builds.LogBook(lambda line: None)
    book("hello")
    number = builds.start(cluster.store, "blog", sha=SHA, ref="refs/heads/main", who="initial", receiver="home-1")
    builds.finish(cluster.store, "blog", number, builds.FAILED, book, reason="no", stage="build")
    assert api.get("/v1/apps/blog/builds", headers=admin).json["builds"]

    assert api.delete("/v1/apps/blog", headers=admin).status_code == 200
    assert cluster.store.count(keys.build("blog")) == 0 and cluster.store.count(keys.build_log("blog")) == 0
    assert api.get("/v1/apps/blog/builds", headers=admin).status_code == 404
    assert api.post("/v1/apps", json={"name": "blog"}, headers=admin).status_code == 201
    assert api.get("/v1/apps/blog/builds", headers=admin).json["builds"] == []  # nothing of the old app
    none = api.get("/v1/apps/blog/builds/latest", headers=admin)
    assert none.status_code == 404 and "no builds yet" in none.json["error"]

    for bad in ("Blog", "a_b", "x" * 40):
        assert api.get(f"/v1/apps/{bad}/builds", headers=admin).status_code == 400, bad
    for bad in ("0", "-1", "v1", "1.5", "²", "9" * 12):
        assert api.get(f"/v1/apps/blog/builds/{bad}", headers=admin).status_code == 400, bad
    assert api.get("/v1/apps/blog/builds").status_code == 401


class ApiClient:
    """Client.from_config() for the CLI, over the Flask test client."""

    def __init__(self, api, headers):
        self.api, self.headers = api, headers

    def get(self, path: str, **params):
        from vcapp.cli.client import ClientError

        r = self.api.get(path, headers=self.headers, query_string=params)
        if r.status_code != 200:
            raise ClientError(r.json["error"])
        return r.json


def test_vcapp_builds_lists_and_prints_a_log(api, cluster, admin, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "build_here", failing_build)
    push(cluster.store, tmp_path)
    monkeypatch.setattr(builds_cli.Client, "from_config", classmethod(lambda cls: ApiClient(api, admin)))
    runner = CliRunner()

    listed = runner.invoke(builds_cli.builds, ["blog"])
    assert listed.exit_code == 0, listed.output
    head, row = listed.output.splitlines()[:2]
    assert head.split()[:4] == ["BUILD", "RESULT", "SHA", "WHEN"]
    assert row.split()[:4] == ["1", "failed", "(build)", SHA[:7]] and "initial" in row and "home-1" in row
    assert "`vcapp builds log blog 1` prints the log of build 1" in listed.output
    as_json = runner.invoke(builds_cli.builds, ["blog", "--json"])
    assert json.loads(as_json.output)["builds"][0]["result"] == "failed"

    log = runner.invoke(builds_cli.builds, ["log", "blog"])
    assert log.exit_code == 0, log.output
    assert "ERROR: No matching distribution found for nosuchpkg" in log.output
    assert "=====> build 1 of blog: failed (build)" in log.output
    assert runner.invoke(builds_cli.builds, ["log", "blog", "1"]).output == log.output
    missing = runner.invoke(builds_cli.builds, ["log", "blog", "7"])
    assert missing.exit_code == 1 and "app blog has no build 7" in missing.output
