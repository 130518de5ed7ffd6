"""What vcapp this machine runs: the release (vcapp.__version__) and the build, a fingerprint
of the installed code.

Every machine's record carries both (the node daemon refreshes them), so `vcapp nodes` shows a
cluster mid-upgrade, and `vcapp node upgrade` knows when the restarted daemon runs the code it
installed. The build is a hash of the files of vcapp's packages as installed, not of git: a
wheel copied to a machine has no repository, and two commits of one release differ in it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

from vcapp import __version__

# The distribution's top-level packages (pyproject.toml [tool.setuptools.packages.find]).
PACKAGES = ("vcapp", "mesh", "gitserver", "builder", "buildpacks", "placer", "runtime", "router", "storage")
SUFFIXES = (".py", ".js", ".css", ".html", ".svg")
BUILD_CHARS = 12


def installed_roots(packages: tuple[str, ...] = PACKAGES) -> dict[str, list[Path]]:
    """Where this Python imports each package from."""
    roots = {}
    for package in packages:
        spec = importlib.util.find_spec(package)
        roots[package] = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    return roots


def tree_roots(top: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, list[Path]]:
    """The packages of a source tree or an unpacked wheel, both of which hold them at the top."""
    return {package: [top / package] for package in packages if (top / package).is_dir()}


def code_files(roots: dict[str, list[Path]]) -> list[tuple[str, Path]]:
    """(name relative to the packages' parent, path) of every code file under `roots`, sorted."""
    found = []
    for package, bases in roots.items():
        for base in bases:
            for path in base.rglob("*"):
                if path.suffix in SUFFIXES and path.is_file() and "__pycache__" not in path.parts:
                    found.append((f"{package}/{path.relative_to(base).as_posix()}", path))
    return sorted(found)


def fingerprint(files: list[tuple[str, Path]]) -> str:
    """A hash of names and contents (pure but for reading the files)."""
    digest = hashlib.sha256()
    for name, path in files:
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:BUILD_CHARS]


@functools.cache
def build() -> str:
    """This process's build, read once: the code a daemon runs is the code it started with."""
    return fingerprint(code_files(installed_roots()))


def build_of_tree(top: Path) -> str:
    """The build a source tree or an unpacked wheel installs."""
    return fingerprint(code_files(tree_roots(top)))


def describe() -> str:
    """"0.1.0 (build 1a2b3c4d5e6f)", as `vcapp --version` and the daemon's log say it."""
    return f"{__version__} (build {build()})"
