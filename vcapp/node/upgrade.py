"""This machine's side of `vcapp node upgrade`: what a source would install, installing it into
the Python the node daemon runs, restarting the daemon, and the skew rule.

An upgrade goes one machine at a time (vcapp/cli/upgrade.py drives it through the API: drain,
install, restart, undrain). While it runs, the cluster holds two builds at most: the one every
machine ran and the one being rolled out. Records are read tolerantly (missing fields take
defaults, unknown fields are kept), so adjacent builds share etcd and the API.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from vcapp import version
from vcapp.errors import BadRequest, Conflict, Unavailable
from vcapp.node import bootstrap, daemon, service

PIP_TIMEOUT = 900.0  # s: a wheel whose new dependencies come from PyPI on a slow line
PIP_TAIL = 20  # lines of pip's output a failure shows
START_TIMEOUT = 30.0  # s: a restarted daemon writes its pid file within a second or two


@dataclass(frozen=True)
class Source:
    """What an upgrade installs: a wheel or a source tree, and the build it makes."""

    path: Path
    build: str


def read_source(text: str) -> Source:
    """A wheel file (vcapp-*.whl) or a vcapp source tree (with pyproject.toml), and its build;
    anything else is refused before the machine changes."""
    path = Path(text).expanduser().resolve()
    if path.is_file() and path.suffix == ".whl":
        try:
            with zipfile.ZipFile(path) as wheel, tempfile.TemporaryDirectory() as tmp:
                members = [m for m in wheel.namelist() if m.split("/", 1)[0] in version.PACKAGES]
                if not any(m.startswith("vcapp/") for m in members):
                    raise BadRequest(f"{path} is not a vcapp wheel (it holds no vcapp package)")
                wheel.extractall(tmp, members)
                return Source(path, version.build_of_tree(Path(tmp)))
        except zipfile.BadZipFile:
            raise BadRequest(f"{path} is not a wheel (not a zip file); build one with "
                             "`pip wheel --no-deps -w dist .` in vcapp's source") from None
    if path.is_dir() and (path / "pyproject.toml").is_file() and (path / "vcapp" / "__init__.py").is_file():
        return Source(path, version.build_of_tree(path))
    raise BadRequest(f"{text}: give a vcapp wheel (vcapp-*.whl) or a vcapp source directory (with pyproject.toml)")


def skew_refusal(builds: dict[str, str], name: str, target: str) -> str:
    """Why upgrading machine `name` to build `target` must wait, or "" (pure). `builds`: every
    machine's build now ("" for a release before builds). At most two builds at once: finish
    one rollout before starting the next."""
    others = {b for m, b in builds.items() if m != name} - {target}
    if len(others) > 1:
        running = ", ".join(f"{m} {b[:7] or 'older'}" for m, b in sorted(builds.items()))
        return (f"machines run {len(others)} builds besides {target[:7]} ({running}): finish the upgrade under way, "
                "one build at a time, before installing another")
    return ""


def daemon_argv() -> list[str]:
    """The running node daemon's command line: its Python first."""
    pid = daemon.running_pid()
    if not pid:
        raise Unavailable("the node daemon does not run on this machine; start it (`systemctl start "
                          f"{service.UNIT_NAME}`, or `vcapp node run`) and upgrade then")
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    return [a.decode() for a in argv]


def python_of(argv: list[str]) -> str:
    found = argv[0] if os.path.isabs(argv[0]) else shutil.which(argv[0])
    if not found or argv[1:3] != ["-m", "vcapp"]:
        raise Conflict(f"the node daemon runs as {' '.join(argv)!r}, not `PYTHON -m vcapp node run`: "
                       "upgrade it the way it was installed")
    return found


def _pip(python: str, *args: str) -> None:
    proc = subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=PIP_TIMEOUT)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-PIP_TAIL:])
        raise Unavailable(f"pip install {' '.join(args)} failed:\n{tail}")


def install(python: str, source: Source) -> str:
    """Install `source` into `python`'s environment and return the build that environment now
    imports. Its dependencies first (pip skips what is there), then vcapp itself even when
    the version number did not change: two builds of one release share it."""
    _pip(python, "--quiet", str(source.path))
    _pip(python, "--quiet", "--no-deps", "--force-reinstall", str(source.path))
    proc = subprocess.run([python, "-c", "from vcapp import version; print(version.build())"],
                          capture_output=True, text=True, timeout=60, cwd="/")
    if proc.returncode != 0:
        raise Unavailable(f"{python} cannot import the installed vcapp: {proc.stderr.strip()[-500:]}")
    return proc.stdout.strip()


def restart(argv: list[str]) -> None:
    """Restart the node daemon on its new code: the systemd unit where systemd runs it, else the
    same command line again as a detached child (as `vcapp node join` starts it). App containers
    keep running across it (the next daemon adopts them)."""
    if service.systemd_runs_this_machine() and service.installed():
        bootstrap.unit_call("restart", service.restart)
        return
    bootstrap.stop_daemon()
    log = bootstrap.spawn_daemon(argv)
    deadline = time.monotonic() + START_TIMEOUT
    while not daemon.running_pid():
        if time.monotonic() > deadline:
            raise Unavailable(f"the restarted node daemon did not start within {START_TIMEOUT:.0f} s; {log} says why")
        time.sleep(0.2)
