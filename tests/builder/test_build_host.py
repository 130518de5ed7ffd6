"""Builds that need the package registries (PyPI) run in the host's network namespace here,
as they would on a real machine with internet: the simulated machines have none.

They use a builder storage of their own under /var/tmp (kept between runs, so the layer
cache stays warm) and a registry on 127.0.0.1."""

from __future__ import annotations

import pytest

from builder import proc
from builder.build import build
from builder.errors import BuildError
from tests.builder.conftest import get, podman, served, write_tree

pytestmark = pytest.mark.cluster

FLASK_APP = '''\
import os
from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return f"flask says hi on {os.environ['PORT']}\\n"
'''


def test_flask_app_with_requirements_installs_from_pypi_and_serves(host_env, local_registry, tmp_path, stack_archives):
    tree = write_tree(tmp_path / "flask", {"requirements.txt": "flask>=3\ngunicorn>=22\n", "app.py": FLASK_APP})
    lines: list[str] = []
    result = build(tree, "flaskapp", 4, local_registry, on_line=lines.append, spawn=proc.local(host_env))
    assert any("gunicorn --bind 0.0.0.0:$PORT" in l for l in lines)
    assert any("pip install" in l for l in lines)

    podman(host_env, "rmi", "-f", result.image)  # run what the registry holds, not the local copy
    podman(host_env, "pull", "--tls-verify=false", result.image)
    with served(host_env, result.image, "vcapp-builder-test-flask") as url:
        body, server = get(url)
    podman(host_env, "rmi", result.image)  # the tag names a port of this run only; layers stay cached
    assert body == "flask says hi on 8080\n"
    assert server.startswith("gunicorn")


def test_failing_pip_install_fails_the_build_with_pips_message(host_env, tmp_path, stack_archives):
    tree = write_tree(tmp_path / "badreq", {"requirements.txt": "vcapp-no-such-package-ever==0.0.1\n",
                                            "app.py": "print('never')\n"})
    with pytest.raises(BuildError) as err:
        build(tree, "badreq", 1, None, spawn=proc.local(host_env))
    assert "No matching distribution found for vcapp-no-such-package-ever" in str(err.value)


PIPFILE = """\
[[source]]
url = "https://pypi.org/simple"
verify_ssl = true
name = "pypi"

[packages]
flask = "*"
gunicorn = "*"
"""

PYPROJECT = """\
[project]
name = "asgi-sample"
version = "0.1"
dependencies = ["uvicorn"]

[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[tool.setuptools]
py-modules = ["main"]
"""

ASGI_APP = '''\
async def asgi(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"asgi says hi\\n"})

app = asgi
'''

FLASK_PIPFILE_APP = FLASK_APP.replace("flask says hi", "pipfile flask says hi")


@pytest.mark.parametrize("files, answer, server", [
    ({"Pipfile": PIPFILE, "app.py": FLASK_PIPFILE_APP}, "pipfile flask says hi on 8080\n", "gunicorn"),
    ({"pyproject.toml": PYPROJECT, "main.py": ASGI_APP}, "asgi says hi\n", "uvicorn"),
], ids=["pipfile-gunicorn", "pyproject-uvicorn"])
def test_pipfile_and_pyproject_apps_serve(host_env, tmp_path, stack_archives, files, answer, server):
    tree = write_tree(tmp_path / "app", files)
    result = build(tree, "pyvariant", 1, None, spawn=proc.local(host_env))
    with served(host_env, result.image, "vcapp-builder-test-pyvariant") as url:
        body, server_header = get(url)
    assert body == answer and server_header.startswith(server)
