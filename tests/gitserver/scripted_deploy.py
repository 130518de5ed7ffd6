"""The git server as the tests run it under gunicorn, with a scripted deploy callable.

The git server, gunicorn and the git client are real; only `on_push` (the builder's and
control plane's job, not the git server's) is a script the test steers through files in a
control directory:

    <ctl>/mode          what the next deploy does: release | fail | crash | gate | quiet
    <ctl>/gate-open     created by the test to let a `gate` deploy finish
    <ctl>/calls/N.json  one record per on_push call: arguments and the checked-out files

Started as `gunicorn 'tests.gitserver.scripted_deploy:create_app()'` with GITTEST_ROOT,
GITTEST_CTL, GITTEST_TOKEN in the environment. The git app is mounted at /git behind a tiny
Flask app, the way the control plane mounts it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from gitserver.push import DeployError, PushResult
from gitserver.wsgi import GitConfig, create_git_app

# A gate deploy waits for the test to see its first line; the test gives up well before this.
GATE_SECONDS = 20.0
QUIET_SECONDS = 1.5  # longer than several keepalive intervals in the tests' config
TEST_KEEPALIVE_SECONDS = 0.2


def read_tree(source_dir: Path) -> dict[str, str]:
    files = {}
    for p in sorted(source_dir.rglob("*")):
        if p.is_file():
            files[str(p.relative_to(source_dir))] = p.read_bytes().decode("utf-8", "replace")[:200]
    return files


class ScriptedDeploy:
    def __init__(self, ctl: Path):
        self.ctl = ctl
        (ctl / "calls").mkdir(parents=True, exist_ok=True)

    def __call__(self, *, app, ref, old_sha, new_sha, source_dir, log, who) -> PushResult:
        calls = self.ctl / "calls"
        n = len(list(calls.glob("*.json"))) + 1
        record = dict(app=app, ref=ref, old_sha=old_sha, new_sha=new_sha, who=who,
                      source_dir=str(source_dir), files=read_tree(source_dir))
        (calls / f"{n}.json").write_text(json.dumps(record))
        mode = (self.ctl / "mode").read_text().strip() if (self.ctl / "mode").exists() else "release"
        return getattr(self, "deploy_" + mode)(app, source_dir, log, n)

    def deploy_release(self, app, source_dir, log, n):
        if not any(source_dir.iterdir()):
            raise DeployError("nothing to build: the pushed tree is empty; add a Dockerfile or app files")
        for step in ("building image", "pushing image", "starting release"):
            log(f"{step}")
            log(f"stamp {time.time():.6f}")
        return PushResult.released(n, f"https://{app}.apps.example.test")

    def deploy_fail(self, app, source_dir, log, n):
        log("Collecting nosuchpkg")
        log("ERROR: No matching distribution found for nosuchpkg")
        return PushResult.failed("pip install exited 1 (see the lines above)")

    def deploy_crash(self, app, source_dir, log, n):
        return {}["no-such-key"]

    def deploy_gate(self, app, source_dir, log, n):
        log(f"line 1 {time.time():.6f}")
        deadline = time.monotonic() + GATE_SECONDS
        while not (self.ctl / "gate-open").exists():
            if time.monotonic() > deadline:
                return PushResult.failed("gate never opened: the test did not see line 1 live")
            time.sleep(0.01)
        log("line 2 after the gate")
        return PushResult.released(n, f"https://{app}.apps.example.test")

    def deploy_quiet(self, app, source_dir, log, n):
        time.sleep(QUIET_SECONDS)
        return PushResult.released(n, f"https://{app}.apps.example.test")


def create_app():
    root, ctl, token = Path(os.environ["GITTEST_ROOT"]), Path(os.environ["GITTEST_CTL"]), os.environ["GITTEST_TOKEN"]
    config = GitConfig(root=root, authenticate=lambda t: "alice" if t == token else None,
                       on_push=ScriptedDeploy(ctl), keepalive_seconds=TEST_KEEPALIVE_SECONDS)
    api = Flask("fake-api")
    api.add_url_rule("/healthz", "healthz", lambda: "ok")
    api.wsgi_app = DispatcherMiddleware(api.wsgi_app, {"/git": create_git_app(config)})
    return api
