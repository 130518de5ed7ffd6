"""A user's unchanged app on the cluster `vcapp dev up` installs (platform.install): its
dependencies come from PyPI through the cluster setting build.proxy, which points at the
simulated internet's one way out; an impossible Python version is refused at push time."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from vcapp.dev import platform

pytestmark = pytest.mark.cluster

PUSH_TIMEOUT = 900.0  # s: a first build loads the python stack into the machine, then pip
ROUTE_WAIT = 60.0  # s: the edge polls its routes every second; a promoted release answers in seconds

FLASK_APP = """\
from importlib.metadata import version

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return f"flask {version('flask')} from PyPI\\n"
"""


@pytest.fixture(scope="module")
def cl(make_sim):
    sim = make_sim(home=1, office=0)  # one machine: the build, the registry and the app on it
    return sim, platform.install(sim.dc, say=lambda line: None)


def push(cl, app: str, files: dict[str, str]) -> subprocess.CompletedProcess:
    """Create `app` and git push `files` to it from the first machine, as its admin would."""
    sim, found = cl
    sim.run(found.first, "vcapp", "apps", "create", app)
    repo = sim.dc.host_dir(found.first) / "data" / "push" / app
    repo.mkdir(parents=True)
    for name, text in files.items():
        (repo / name).write_text(text)
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", app]):
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@vcapp.test", *args],
                       check=True, capture_output=True)
    remote = f"{found.api_url.replace('http://', f'http://admin:{found.admin_token}@')}/git/{app}.git"
    return sim.run(found.first, "git", "-C", str(repo), "push", remote, "main", check=False, timeout=PUSH_TIMEOUT)


def through_the_edge(sim, app: str) -> tuple[str, str]:
    host = f"{app}.{platform.DOMAIN}"
    out = sim.fetch(f"https://{host}/", "--cacert", str(platform.edge_ca(sim.dc)),
                    "--resolve", f"{host}:443:{sim.addr('edge')}", "-w", "\n%{http_code}")
    body, _, status = out.stdout.rpartition("\n")
    return status, body


def test_the_installed_cluster_builds_through_its_way_out(cl):
    sim, found = cl
    shown = json.loads(sim.run(found.first, "vcapp", "settings", "show", "--json").stdout)
    assert shown == {"build.proxy": sim.dc.proxy_url}


def test_flask_from_pypi_is_pushed_built_and_answers_through_the_edge(cl):
    sim, _ = cl
    pushed = push(cl, "flaskpypi", {"requirements.txt": "flask\n", "app.py": FLASK_APP})
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert "Downloading flask-" in pushed.stderr  # from PyPI, nothing vendored
    deadline = time.monotonic() + ROUTE_WAIT
    while (answer := through_the_edge(sim, "flaskpypi"))[0] != "200" and time.monotonic() < deadline:
        time.sleep(1)
    status, body = answer
    assert status == "200" and body.startswith("flask ") and body.endswith(" from PyPI\n"), answer


def test_a_python_version_that_does_not_exist_is_refused_at_push(cl):
    pushed = push(cl, "py314", {"requirements.txt": "flask\n", "app.py": FLASK_APP, ".python-version": "3.14\n"})
    assert pushed.returncode != 0
    assert "Python 3.14 (.python-version) is not available: 3.11 (bookworm) and 3.13 (trixie) are" in pushed.stderr
    assert "STEP " not in pushed.stderr and "Downloading" not in pushed.stderr  # refused before building
