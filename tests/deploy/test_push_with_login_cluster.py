"""`git push cluster main` on a simulated machine with only `vcapp login` (token typed at its
prompt) and `vcapp apps create` done: git finds the token through `vcapp git-credential`; no
remote URL, command line or git config holds it (issue 19). One machine, a real build."""

from __future__ import annotations

import json
import subprocess

import pytest

from buildpacks.stacks import STACKS
from builder import stacks
from tests.control.conftest import ControlCluster

pytestmark = pytest.mark.cluster

APP = "hello"
PUSH_TIMEOUT = 600  # a cold first build loads the python stack into the machine's storage
APP_PY = '''\
import os
from http.server import BaseHTTPRequestHandler, HTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Hello).serve_forever()
'''


@pytest.fixture(scope="module")
def cc(make_sim):
    stacks.ensure_archive(STACKS["python"], on_line=print)
    sim = make_sim(home=1, office=0)
    cc = ControlCluster(sim, ["home-1"])
    cc.boot_daemons()
    cc.init("home-1")
    cc.wait(lambda: cc.all_up("home-1"), 90, "home-1 up")
    return cc


def test_a_push_with_only_vcapp_login_deploys(cc):
    m = "home-1"
    home = cc.sim.dc.host_dir(m) / "home"
    for made_by_init in (home / ".config" / "vcapp" / "config.json", home / ".gitconfig"):
        made_by_init.unlink(missing_ok=True)  # a laptop that never saw the cluster
    url = f"http://{cc.sim.addr(m)}:7180"
    login = cc.sim.run(m, "vcapp", "login", url, input=cc.admin_token + "\n")
    assert f"git: pushes to {url} get the token from `vcapp git-credential`" in login.stdout, login.stdout

    repo = cc.sim.dc.host_dir(m) / "data" / "laptop" / APP
    repo.mkdir(parents=True)
    (repo / "requirements.txt").write_text("")
    (repo / "app.py").write_text(APP_PY)
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "v1"]):
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=Alice", "-c", "user.email=alice@example.com", *args],
                       check=True, capture_output=True)
    made = cc.sim.run(m, "vcapp", "apps", "create", APP, cwd=repo)
    assert f"added git remote cluster -> {url}/git/{APP}.git" in made.stdout, made.stdout

    pushed = cc.sim.run(m, "env", "GIT_TERMINAL_PROMPT=0", "GIT_TRACE=1", "git", "push", "cluster", "main",
                        cwd=repo, check=False, timeout=PUSH_TIMEOUT)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert "git-credential get" in pushed.stderr  # git asked the helper; no command line it ran held the token
    assert cc.admin_token not in pushed.stderr
    releases = json.loads(cc.vcapp(m, "releases", APP, "--json").stdout)
    assert releases["current"] == 1 and releases["releases"][0]["status"] == "released", releases
    for path in (repo / ".git" / "config", home / ".gitconfig"):
        assert cc.admin_token not in path.read_text(), path
