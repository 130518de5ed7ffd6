"""Apps by git push on the simulated cluster: an app with its own Dockerfile, its image run by
another machine, and the bad pushes that must leave the release history as it was.

Same cluster shape and laptop as test_git_push_deploy (its fixtures and helpers): 3 machines
on one LAN, the real `git` CLI on home-3 pushing to home-1's API. Apps whose dependencies come
from PyPI or npm (through the cluster's build proxy) are tests/cluster/test_real_apps.py's.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from buildpacks.stacks import STACKS
from tests.control.conftest import ControlCluster
from tests.deploy.test_git_push_deploy import (  # noqa: F401  (cc and python_stack are fixtures)
    PUSH_TIMEOUT, api, ask, auth_file, cc, commit, git, python_stack, remote_lines, serving, wait_serving,
)

pytestmark = pytest.mark.cluster

BOXED = "boxed"  # the app with its own Dockerfile
RUN_ELSEWHERE_PORT = 18080  # where home-2 publishes the image it pulled by hand
PULL_TIMEOUT = 180  # s: ~100 MB of layers over the LAN, on a loaded host
GREETING = "built from my own Dockerfile"

BOXED_SERVER = '''\
import os
from http.server import BaseHTTPRequestHandler, HTTPServer


class Boxed(BaseHTTPRequestHandler):
    def do_GET(self):
        body = open("/srv/greeting.txt", "rb").read() + os.environ.get("SUFFIX", "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Boxed).serve_forever()
'''

BOXED_DOCKERFILE = f"""\
FROM {STACKS['python'].alias}
COPY server.py /srv/server.py
RUN printf "{GREETING}" > /srv/greeting.txt
CMD ["python3", "/srv/server.py"]
"""


# ---- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def our_apps(cc):
    api("POST", cc, "/v1/apps", {"name": BOXED})
    return cc


def laptop_repo(tmp_path_factory, app: str) -> Path:
    path = tmp_path_factory.mktemp("laptop") / app
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    return path


@pytest.fixture(scope="module")
def boxed_repo(tmp_path_factory) -> Path:
    return laptop_repo(tmp_path_factory, BOXED)


# ---- helpers (per app; test_git_push_deploy's are for its one app) ----------------------

def push(cc: ControlCluster, repo: Path, app: str) -> subprocess.CompletedProcess:
    url = f"http://admin:{cc.admin_token}@{cc.sim.addr('home-1')}:7180/git/{app}.git"
    return cc.sim.run("home-3", "git", "-C", str(repo), "push", url, "main", check=False, timeout=PUSH_TIMEOUT)


def releases(cc: ControlCluster, app: str) -> dict:
    return json.loads(cc.vcapp("home-1", "releases", app, "--json").stdout)


def registry_digest(cc: ControlCluster, image: str) -> str:
    """The digest the cluster registry serves for `image` (host:port/repo:tag), asked from home-3
    with its machine credential (curl reads it from stdin: never in a command line)."""
    host, rest = image.split("/", 1)
    repo, tag = rest.rsplit(":", 1)
    auth = json.loads(auth_file(cc, "home-3").read_text())["auths"][host]["auth"]
    head = cc.sim.run("home-3", "curl", "-sSf", "-I", "--max-time", "10", "-K", "-", "-H",
                      "Accept: application/vnd.oci.image.manifest.v1+json, "
                      "application/vnd.docker.distribution.manifest.v2+json",
                      f"http://{host}/v2/{repo}/manifests/{tag}",
                      input=f'user = "{base64.b64decode(auth).decode()}"\n').stdout
    return next(l.split(":", 1)[1].strip() for l in head.splitlines() if l.lower().startswith("docker-content-digest:"))


# ---- an app with its own Dockerfile -----------------------------------------------------

def test_app_with_dockerfile_is_built_as_it_is_released_and_answers(our_apps, boxed_repo):
    cc = our_apps
    commit(boxed_repo, {"Dockerfile": BOXED_DOCKERFILE, "server.py": BOXED_SERVER}, "boxed v1")
    proc = push(cc, boxed_repo, BOXED)
    lines = remote_lines(proc)
    assert proc.returncode == 0, proc.stderr
    assert "-----> Dockerfile found: building it as it is" in lines
    assert not any(l.startswith("-----> web process") for l in lines), "no buildpack chose a command"
    assert any(l.startswith("-----> Released v1") for l in lines), proc.stderr
    rel = releases(cc, BOXED)
    assert rel["current"] == 1 and rel["releases"][0]["language"] == "dockerfile"
    image = rel["releases"][0]["image"]
    assert image == f"{cc.sim.addr('home-1')}:5000/apps/{BOXED}:1"
    assert registry_digest(cc, image) == rel["releases"][0]["digest"], "the release's image is in the registry"
    wait_serving(cc, GREETING, app=BOXED)


def test_another_machine_pulls_the_image_and_runs_it(our_apps):
    cc = our_apps
    image = releases(cc, BOXED)["releases"][0]["image"]
    pulled = cc.sim.run("home-2", "podman", "pull", "-q", "--authfile", str(auth_file(cc, "home-2")), image,
                        check=False, timeout=PULL_TIMEOUT)
    assert pulled.returncode == 0, pulled.stderr
    name = "by-hand"
    cgroup = cc.sim.dc.host_env("home-2")["VCAPP_CGROUP_PARENT"]
    cc.sim.run("home-2", "podman", "rm", "-f", name, check=False)
    cc.sim.run("home-2", "podman", "run", "-d", "--name", name, "--cgroup-parent", f"{cgroup}/{name}",
               "-e", "PORT=8080", "-e", "SUFFIX=, run by hand on home-2", "-p", f"{RUN_ELSEWHERE_PORT}:8080", image)
    try:
        url = f"http://{cc.sim.addr('home-2')}:{RUN_ELSEWHERE_PORT}/"
        cc.wait(lambda: ask(cc, ("home-3", url)) == f"{GREETING}, run by hand on home-2", 60,
                "the hand-run container to answer", interval=0.5)
    finally:
        cc.sim.run("home-2", "podman", "rm", "-f", name, check=False)


# ---- bad pushes leave no release --------------------------------------------------------

BAD_PUSHES = {
    "malformed vcapp.toml": (
        {"vcapp.toml": "port = 8080\n\n[resources]\nmemory = \"lots\"\n"}, (),
        ("vcapp.toml line 4: resources.memory: use a size like \"256M\"",)),
    "nothing to build": (
        {"NOTES.md": "just notes\n"}, ("Dockerfile", "server.py"),
        ("nothing to build: no Dockerfile",)),
    "a failing build step": (
        {"Dockerfile": BOXED_DOCKERFILE + "RUN echo checking the schema && exit 3\n"}, (),
        ("checking the schema", "deploy failed: build failed")),
}


@pytest.mark.parametrize("case", list(BAD_PUSHES))
def test_bad_push_is_refused_and_leaves_no_release(our_apps, boxed_repo, case):
    cc = our_apps
    files, removed, messages = BAD_PUSHES[case]
    before = releases(cc, BOXED)
    commit(boxed_repo, files, case, remove=removed)
    try:
        proc = push(cc, boxed_repo, BOXED)
        assert proc.returncode != 0
        assert all(m in proc.stderr for m in messages), proc.stderr
        assert "[remote rejected]" in proc.stderr
        assert releases(cc, BOXED) == before, "no new release record, the current one unchanged"
        assert serving(cc, BOXED) == GREETING
    finally:
        git(boxed_repo, "reset", "-q", "--hard", "HEAD~1")
