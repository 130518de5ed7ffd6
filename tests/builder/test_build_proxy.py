"""Builds on a simulated machine whose only way out is the dev proxy (vcapp/dev/egress.py):
dependencies come from PyPI through it (nothing vendored), a Python version that does not
exist is refused before anything runs, and a newer one gets the trixie stack (made through
the same proxy when it is not cached yet)."""

from __future__ import annotations

import pytest

from builder.build import Proxy, build
from builder.errors import NothingToBuild
from tests.builder.conftest import APP_PORT, wait_http, write_tree

pytestmark = pytest.mark.cluster

FLASK_APP = """\
import sys
from importlib.metadata import version

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return f"flask {version('flask')} on python {sys.version.split()[0]}\\n"
"""


@pytest.fixture(scope="module")
def proxy(sim) -> Proxy:
    """What the cluster setting build.proxy gives a build on the simulated cluster."""
    return Proxy(sim.dc.proxy_url, no_proxy=("10.0.0.0/8",))


def proxy_log(sim) -> str:
    return (sim.dc.egress_dir / "tinyproxy.log").read_text(errors="replace")


def test_flask_from_pypi_builds_through_the_proxy_and_answers(sim, home1, proxy, tmp_path):
    tree = write_tree(tmp_path / "flaskapp", {"requirements.txt": "flask\n", "app.py": FLASK_APP})
    lines: list[str] = []
    result = build(tree, "flaskpypi", 1, None, on_line=lines.append, proxy=proxy, **home1.build_kwargs())
    assert result.language == "python"
    assert any("Downloading flask-" in line for line in lines), "\n".join(lines[-20:])
    assert "CONNECT files.pythonhosted.org:443" in proxy_log(sim)  # the wheels came through the proxy

    home1.serve(result.image, "flaskpypi-1", port=APP_PORT + 10)
    body = wait_http(sim, "home-2", f"http://{home1.addr}:{APP_PORT + 10}/")
    assert body.startswith("flask ") and body.endswith(" on python 3.11.2\n")


def test_a_python_version_that_does_not_exist_is_refused_before_building(sim, home1, proxy, tmp_path):
    tree = write_tree(tmp_path / "py314", {"requirements.txt": "flask\n", "app.py": FLASK_APP,
                                           ".python-version": "3.14\n"})
    lines: list[str] = []
    with pytest.raises(NothingToBuild) as err:
        build(tree, "py314", 1, None, on_line=lines.append, proxy=proxy, **home1.build_kwargs())
    assert err.value.reason.startswith(
        "Python 3.14 (.python-version) is not available: 3.11 (bookworm) and 3.13 (trixie) are")
    assert lines == []  # nothing ran: no stack, no buildah


# Making the trixie stack (debootstrap through the proxy, then apt) took 10+ minutes on the
# shared 2-core host; cached under /var/cache/vcapp/stacks afterwards.
STACK_TIMEOUT = 2400


@pytest.mark.timeout(STACK_TIMEOUT)
def test_python_313_builds_on_the_trixie_stack(sim, home1, proxy, tmp_path):
    tree = write_tree(tmp_path / "py313", {"requirements.txt": "flask\n", "app.py": FLASK_APP,
                                           ".python-version": "3.13\n"})
    lines: list[str] = []
    result = build(tree, "py313", 1, None, on_line=lines.append, proxy=proxy, **home1.build_kwargs())
    assert "-----> Python 3.13.5 (trixie) for '3.13' in .python-version" in lines
    home1.serve(result.image, "py313-1", port=APP_PORT + 11)
    body = wait_http(sim, "home-2", f"http://{home1.addr}:{APP_PORT + 11}/")
    assert body.startswith("flask ") and body.endswith(" on python 3.13.5\n")
