"""What `vcapp node upgrade` decides before it changes anything (vcapp/node/upgrade.py): a
source that is no vcapp wheel or tree is refused with what to give; a wheel's build is the build
its install makes (vcapp/version.py); a third build while two run is refused; the build
changes with any code file and with nothing else."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from vcapp import version
from vcapp.cli.main import cli
from vcapp.errors import BadRequest
from vcapp.node import upgrade

pytestmark = pytest.mark.unit


def tree(top: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (top / name).parent.mkdir(parents=True, exist_ok=True)
        (top / name).write_text(text)
    return top


SOURCE = {"pyproject.toml": "[project]\nname='vcapp'\n", "vcapp/__init__.py": "__version__ = '0.1.0'\n",
          "vcapp/api/static/dash.js": "let a = 1;\n", "router/edge.py": "X = 1\n", "docs/x.md": "words\n"}


def test_a_wheel_has_the_build_its_unpacked_tree_has(tmp_path):
    src = tree(tmp_path / "src", SOURCE)
    wheel = tmp_path / "vcapp-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name in SOURCE:
            if not name.startswith(("pyproject", "docs")):
                z.write(src / name, name)
        z.writestr("vcapp-0.1.0.dist-info/RECORD", "whatever")
    assert upgrade.read_source(str(wheel)).build == upgrade.read_source(str(src)).build


def test_the_build_changes_with_code_and_not_with_docs_or_bytecode(tmp_path):
    src = tree(tmp_path / "src", SOURCE)
    before = version.build_of_tree(src)
    tree(src, {"docs/x.md": "other words\n", "vcapp/__pycache__/x.cpython-311.pyc": "junk"})
    assert version.build_of_tree(src) == before
    tree(src, {"vcapp/api/static/dash.js": "let a = 2;\n"})
    assert version.build_of_tree(src) != before
    tree(src, {"vcapp/api/static/dash.js": "let a = 1;\n", "storage/new.py": ""})
    assert version.build_of_tree(src) != before


def test_this_process_reports_the_build_of_the_tree_it_imports():
    root = Path(version.__file__).resolve().parents[1]
    assert version.build() == version.build_of_tree(root)
    assert len(version.build()) == version.BUILD_CHARS


@pytest.mark.parametrize("make, says", [
    (lambda p: p / "missing.whl", "give a vcapp wheel"),
    (lambda p: tree(p / "other", {"pyproject.toml": "[project]\n"}), "give a vcapp wheel"),
    (lambda p: (p / "vcapp-9.whl").write_bytes(b"not a zip") and p / "vcapp-9.whl", "not a zip file"),
])
def test_a_source_that_is_no_vcapp_is_refused_with_what_to_give(tmp_path, make, says):
    with pytest.raises(BadRequest, match=says):
        upgrade.read_source(str(make(tmp_path)))


def test_a_wheel_of_another_project_is_refused(tmp_path):
    wheel = tmp_path / "requests-2.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("requests/__init__.py", "")
    with pytest.raises(BadRequest, match="not a vcapp wheel"):
        upgrade.read_source(str(wheel))


def test_at_most_two_builds_run_at_once():
    assert upgrade.skew_refusal({"a": "old", "b": "old", "c": "old"}, "a", "new") == ""
    assert upgrade.skew_refusal({"a": "new", "b": "old", "c": "old"}, "b", "new") == ""
    assert upgrade.skew_refusal({"a": "", "b": "", "c": "new"}, "a", "new") == ""  # a release before builds
    refusal = upgrade.skew_refusal({"a": "new", "b": "old", "c": "old"}, "b", "newer")
    assert "finish the upgrade under way" in refusal and "a new" in refusal and "c old" in refusal


def test_an_upgrade_of_a_machine_outside_a_cluster_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("VCAPP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VCAPP_RUN_DIR", str(tmp_path / "run"))
    got = CliRunner().invoke(cli, ["node", "upgrade", str(tmp_path / "nothing.whl")])
    assert got.exit_code == 1 and "this machine is in no cluster" in got.output, got.output
    assert not (tmp_path / "data").exists()
