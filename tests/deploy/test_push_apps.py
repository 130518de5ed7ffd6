"""Real apps by git push on the simulated cluster: a Flask app without a Dockerfile, an app
with one, and the bad pushes that must leave the release history as it was.

Same cluster shape and laptop as test_git_push_deploy (its fixtures and helpers): 3 machines
on one LAN, the real `git` CLI on home-3 pushing to home-1's API. The machines have no
internet, so the Flask app brings its dependencies: wheels downloaded here in the host
namespace (which reaches PyPI) are committed under wheels/, and requirements.txt tells pip
`--no-index --find-links wheels` (the Python buildpack copies that directory in before the
install). The buildpack must pick gunicorn for it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from buildpacks.stacks import STACKS
from tests.control.conftest import ControlCluster
from tests.deploy.test_git_push_deploy import (  # noqa: F401  (cc and python_stack are fixtures)
    PUSH_TIMEOUT, SERVE_TIMEOUT, api, ask, auth_file, cc, commit, git, python_stack, remote_lines,
)

pytestmark = pytest.mark.cluster

FLASK = "shop"  # the app without a Dockerfile
BOXED = "boxed"  # the app with its own Dockerfile
# Pinned so the vendored set (and so the build) is the same run to run.
FLASK_REQUIREMENTS = ("flask==3.1.0", "gunicorn==23.0.0")
STACK_PYTHON = "3.11"  # Debian bookworm's python3, which the python stack runs
# Downloaded once per host, reused by later runs (wheels of pinned versions never change).
WHEEL_CACHE = Path(os.environ.get("VCAPP_TEST_WHEELS", "/var/cache/vcapp/test-wheels")) / "flask-gunicorn"
DOWNLOAD_TIMEOUT = 300  # s: ~1 MB of wheels from PyPI
RUN_ELSEWHERE_PORT = 18080  # where home-2 publishes the image it pulled by hand
PULL_TIMEOUT = 180  # s: ~100 MB of layers over the LAN, on a loaded host

FLASK_APP = '''\
import os

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return f"flask {{os.environ.get('VERSION', '{version}')}}\\n"
'''

BOXED_SERVER = '''\
import os
from http.server import BaseHTTPRequestHandler, HTTPServer


class Boxed(BaseHTTPRequestHandler):
    def do_GET(self):
        body = open("/srv/greeting.txt", "rb").read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Boxed).serve_forever()
'''

BOXED_DOCKERFILE = f"""\
FROM {STACKS['python'].alias}
COPY server.py /srv/server.py
RUN echo "built from my own Dockerfile" > /srv/greeting.txt
CMD ["python3", "/srv/server.py"]
"""


# ---- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def wheels() -> Path:
    """Flask + gunicorn wheels for the stack's Python, fetched from PyPI in the host namespace."""
    marker = WHEEL_CACHE / "complete"
    if not marker.exists():
        WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", *FLASK_REQUIREMENTS, "-d", str(WHEEL_CACHE),
                        "--only-binary=:all:", "--python-version", STACK_PYTHON],
                       check=True, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT)
        marker.write_text("\n".join(FLASK_REQUIREMENTS) + "\n")
    return WHEEL_CACHE


@pytest.fixture(scope="module")
def our_apps(cc):
    for app in (FLASK, BOXED):
        api("POST", cc, "/v1/apps", {"name": app})
    return cc


def laptop_repo(tmp_path_factory, app: str) -> Path:
    path = tmp_path_factory.mktemp("laptop") / app
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    return path


@pytest.fixture(scope="module")
def flask_repo(tmp_path_factory, wheels) -> Path:
    repo = laptop_repo(tmp_path_factory, FLASK)
    (repo / "wheels").mkdir()
    for wheel in sorted(wheels.glob("*.whl")):
        (repo / "wheels" / wheel.name).write_bytes(wheel.read_bytes())
    git(repo, "add", "wheels")
    return repo


@pytest.fixture(scope="module")
def boxed_repo(tmp_path_factory) -> Path:
    return laptop_repo(tmp_path_factory, BOXED)


# ---- helpers (per app; test_git_push_deploy's are for its one app) ----------------------

def push(cc: ControlCluster, repo: Path, app: str) -> subprocess.CompletedProcess:
    url = f"http://admin:{cc.admin_token}@{cc.sim.addr('home-1')}:7180/git/{app}.git"
    return cc.sim.run("home-3", "git", "-C", str(repo), "push", url, "main", check=False, timeout=PUSH_TIMEOUT)


def releases(cc: ControlCluster, app: str) -> dict:
    return json.loads(cc.vcapp("home-1", "releases", app, "--json").stdout)


def instance_urls(cc: ControlCluster, app: str) -> list[tuple[str, str]]:
    urls = []
    for e in json.loads(cc.etcd("home-1", "get", "--prefix", "/vc/status/", "-w", "json").stdout).get("kvs", []):
        rep = json.loads(base64.b64decode(e["value"]))
        if rep.get("app") == app and rep.get("host_port") and rep.get("state") == "running":
            urls.append((rep["node"], f"http://127.0.0.1:{rep['host_port']}/"))
    return urls


def serving(cc: ControlCluster, app: str) -> str | None:
    return next((a for a in (ask(cc, u) for u in instance_urls(cc, app)) if a is not None), None)


def wait_serving(cc: ControlCluster, app: str, body: str) -> None:
    cc.wait(lambda: serving(cc, app) == body, SERVE_TIMEOUT, f"{app} to answer {body!r}", interval=0.5)


def server_header(cc: ControlCluster, app: str) -> str:
    [(host, url), *_] = instance_urls(cc, app)
    head = cc.sim.run(host, "curl", "-sS", "-I", "--max-time", "5", url).stdout
    return next((l.split(":", 1)[1].strip() for l in head.splitlines() if l.lower().startswith("server:")), "")


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


# ---- the Flask app without a Dockerfile -------------------------------------------------

def test_flask_app_without_dockerfile_is_built_with_gunicorn_from_its_wheels_and_released(our_apps, flask_repo):
    cc = our_apps
    requirements = "--no-index\n--find-links wheels\n" + "\n".join(FLASK_REQUIREMENTS) + "\n"
    commit(flask_repo, {"requirements.txt": requirements, "app.py": FLASK_APP.format(version="v1")}, "flask v1")
    proc = push(cc, flask_repo, FLASK)
    lines = remote_lines(proc)
    assert proc.returncode == 0, proc.stderr
    assert "-----> python app detected" in lines
    assert "-----> web process: gunicorn --bind 0.0.0.0:$PORT --access-logfile - app:app" in lines
    assert any(l.startswith("Successfully installed") and "flask-3.1.0" in l.lower() and "gunicorn-23.0.0" in l
               for l in lines), f"pip installed the vendored wheels: {lines}"
    assert any(l.startswith("-----> Released v1") for l in lines), proc.stderr
    rel = releases(cc, FLASK)
    assert rel["current"] == 1 and rel["releases"][0]["status"] == "released"
    image = rel["releases"][0]["image"]
    assert image == f"{cc.sim.addr('home-1')}:5000/apps/{FLASK}:1"
    assert registry_digest(cc, image) == rel["releases"][0]["digest"], "the release's image is in the registry"
    wait_serving(cc, FLASK, "flask v1")
    assert server_header(cc, FLASK).startswith("gunicorn")


def test_another_machine_pulls_the_flask_image_and_runs_it(our_apps):
    cc = our_apps
    image = releases(cc, FLASK)["releases"][0]["image"]
    pulled = cc.sim.run("home-2", "podman", "pull", "-q", "--authfile", str(auth_file(cc, "home-2")), image,
                        check=False, timeout=PULL_TIMEOUT)
    assert pulled.returncode == 0, pulled.stderr
    name = "by-hand"
    cgroup = cc.sim.dc.host_env("home-2")["VCAPP_CGROUP_PARENT"]
    cc.sim.run("home-2", "podman", "rm", "-f", name, check=False)
    cc.sim.run("home-2", "podman", "run", "-d", "--name", name, "--cgroup-parent", f"{cgroup}/{name}",
               "-e", "VERSION=run by hand on home-2", "-p", f"{RUN_ELSEWHERE_PORT}:8080", image)
    try:
        url = f"http://{cc.sim.addr('home-2')}:{RUN_ELSEWHERE_PORT}/"
        cc.wait(lambda: ask(cc, ("home-3", url)) == "flask run by hand on home-2", 60,
                "the hand-run container to answer", interval=0.5)
    finally:
        cc.sim.run("home-2", "podman", "rm", "-f", name, check=False)


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
    assert registry_digest(cc, rel["releases"][0]["image"]) == rel["releases"][0]["digest"]
    wait_serving(cc, BOXED, "built from my own Dockerfile")


# ---- bad pushes leave no release --------------------------------------------------------

BAD_PUSHES = {
    "malformed vcapp.toml": (
        {"vcapp.toml": "port = 8080\n\n[resources]\nmemory = \"lots\"\n"}, (),
        ("vcapp.toml line 4: resources.memory: use a size like \"256M\"",)),
    "nothing to build": (
        {"NOTES.md": "just notes\n"}, ("requirements.txt", "app.py"),
        ("nothing to build: no Dockerfile",)),
    "failing pip install": (
        {"requirements.txt": "--no-index\n--find-links wheels\nflask==3.1.0\nvcapp-not-vendored==1.0\n"}, (),
        ("No matching distribution found for vcapp-not-vendored==1.0", "deploy failed: build failed")),
}


@pytest.mark.parametrize("case", list(BAD_PUSHES))
def test_bad_push_is_refused_and_leaves_no_release(our_apps, flask_repo, case):
    cc = our_apps
    files, removed, messages = BAD_PUSHES[case]
    before = releases(cc, FLASK)
    commit(flask_repo, files, case, remove=removed)
    try:
        proc = push(cc, flask_repo, FLASK)
        assert proc.returncode != 0
        assert all(m in proc.stderr for m in messages), proc.stderr
        assert "[remote rejected]" in proc.stderr
        assert releases(cc, FLASK) == before, "no new release record, the current one unchanged"
        assert serving(cc, FLASK) == "flask v1"
    finally:
        git(flask_repo, "reset", "-q", "--hard", "HEAD~1")
