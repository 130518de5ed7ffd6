"""Language version requests -> the stack that serves them, or a refusal naming what exists
(buildpacks/versions.py through buildpacks.packs.detect; pure: files in a temp dir)."""

from __future__ import annotations

import json

import pytest

from buildpacks.packs import DetectError, detect
from buildpacks.stacks import STACKS

pytestmark = pytest.mark.unit

FLASK = {"requirements.txt": "flask\n", "app.py": "from flask import Flask\napp = Flask(__name__)\n"}
NODE = {"server.js": "require('http').createServer().listen(8080)\n"}
GO = {"main.go": "package main\n\nfunc main() {}\n"}
PY_ALL = "Python {} is not available: 3.11 (bookworm) and 3.13 (trixie) are"


def package(engines: str | None) -> dict[str, str]:
    data = {"name": "x", "scripts": {"start": "node server.js"}}
    if engines is not None:
        data["engines"] = {"node": engines}
    return {"package.json": json.dumps(data), **NODE}


def pyproject(spec: str) -> dict[str, str]:
    return {"pyproject.toml": f'[project]\nname = "x"\nversion = "1"\nrequires-python = "{spec}"\n',
            "app.py": "print('hi')\n"}


# (files of the tree, the stack chosen)
CHOSEN = [
    (FLASK, "python"),  # nothing asked: the default stack
    ({**FLASK, ".python-version": "3.13\n"}, "python-trixie"),
    ({**FLASK, ".python-version": "3.11.9\n"}, "python"),  # a pin means the release: Debian has 3.11.2
    ({**FLASK, ".python-version": "# pinned\n3.13.1\n"}, "python-trixie"),
    ({**FLASK, "runtime.txt": "python-3.11.4\n"}, "python"),
    ({**FLASK, "runtime.txt": "python-3.13.0"}, "python-trixie"),
    ({**FLASK, ".python-version": "3.11", "runtime.txt": "python-3.13.0"}, "python"),  # .python-version first
    (pyproject(">=3.10"), "python-trixie"),  # the newest that satisfies
    (pyproject(">=3.9,<3.12"), "python"),
    (pyproject("~=3.11"), "python-trixie"),
    (pyproject("==3.11.*"), "python"),
    (pyproject("!=3.13.*"), "python"),
    (package(None), "node"),
    (package(">=18"), "node-trixie"),
    (package("^18.17.0"), "node"),
    (package("18.x"), "node"),
    (package("20"), "node-trixie"),
    (package("16 || 18"), "node"),
    (package(">=16 <20"), "node"),
    (package("18 - 20"), "node-trixie"),
    (package("*"), "node-trixie"),
    ({"go.mod": "module example.com/a\n", **GO}, "go"),
    ({"go.mod": "module example.com/a\n\ngo 1.19\n", **GO}, "go-trixie"),
    ({"go.mod": "module example.com/a\n\ngo 1.22.3\n\ntoolchain go1.22.5\n", **GO}, "go-trixie"),
]

# (files of the tree, the start of the refusal)
REFUSED = [
    ({**FLASK, ".python-version": "3.14\n"}, PY_ALL.format("3.14 (.python-version)")),
    ({**FLASK, ".python-version": "3.12"}, PY_ALL.format("3.12 (.python-version)")),
    ({**FLASK, "runtime.txt": "python-2.7.18"}, PY_ALL.format("2.7.18 (runtime.txt)")),
    (pyproject(">=3.14"), PY_ALL.format(">=3.14 (requires-python in pyproject.toml)")),
    (pyproject("<3.11"), PY_ALL.format("<3.11 (requires-python in pyproject.toml)")),
    ({**FLASK, "runtime.txt": "ruby-3.2"}, "runtime.txt says 'ruby-3.2': write python-<version>"),
    ({**FLASK, ".python-version": "pypy3.10"}, "Python version 'pypy3.10' is not a version"),
    (package(">=22"), "Node.js >=22 (engines.node in package.json) is not available: 18 (bookworm) and 20 (trixie) are"),
    (package("^16.0.0"), "Node.js ^16.0.0 (engines.node in package.json) is not available"),
    ({"go.mod": "module example.com/a\n\ngo 1.25\n", **GO},
     "Go 1.25 (the go line of go.mod) is not available: 1.19 (bookworm) and 1.24 (trixie) are"),
]


@pytest.mark.parametrize("files, stack", CHOSEN)
def test_the_newest_stack_that_satisfies_the_request(tmp_path, files, stack):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    plan = detect(tmp_path)
    assert plan.stacks[0] == stack
    assert f"FROM {STACKS[stack].image}" in plan.containerfile


@pytest.mark.parametrize("files, message", REFUSED)
def test_an_impossible_version_is_refused_naming_what_exists(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(DetectError) as err:
        detect(tmp_path)
    assert str(err.value).startswith(message), str(err.value)


def test_the_plan_says_which_version_it_chose_and_why(tmp_path):
    for name, text in {**FLASK, ".python-version": "3.13\n"}.items():
        (tmp_path / name).write_text(text)
    assert detect(tmp_path).runtime == "Python 3.13.5 (trixie) for '3.13' in .python-version"


def test_go_source_without_go_mod_says_what_to_add(tmp_path):
    (tmp_path / "main.go").write_text(GO["main.go"])
    with pytest.raises(DetectError) as err:
        detect(tmp_path)
    message = str(err.value)
    assert "main.go" in message and "no go.mod" in message and "`go mod init <module path>`" in message
    assert "nothing to build" not in message
