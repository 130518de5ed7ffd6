"""A cluster started from the previous version's wheel, upgraded machine by machine to this
one with `vcapp node upgrade` under open-loop load through the edge (issue 18 item 5).

The previous version is the commit before the last one that changed vcapp's code, built into
a wheel and installed into its own virtual environment (its dependencies are this one's); the
simulated machines boot that environment's daemon and run its CLI, as `vcapp dev up` would
with that release. This version's wheel is built from the work tree. Each machine in turn is
drained, gets the new wheel in its daemon's Python, restarts, and takes instances again; in
between, machines of both builds run the cluster together. The edge runs this version all
along (it is not upgraded here)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.baseimage import TINY_IMAGE, tiny_build_command, tiny_context
from tests.helpers import openloop
from vcapp import version
from vcapp.dev import platform
from vcapp.dev.rigs.waiting import wait_for
from vcapp.node import upgrade

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CODE_PATHS = [*version.PACKAGES, "pyproject.toml"]
# What a build fingerprints (vcapp/version.py): a commit that changes only pyproject.toml (a
# test dependency) installs other code but the same build, so it is no "previous version".
BUILD_PATHS = [f":(glob){package}/**/*{suffix}" for package in version.PACKAGES for suffix in version.SUFFIXES]
NEW_CLI = str(Path(sys.executable).parent / "vcapp")  # this version's, wherever a host's PATH points
APP = "web"
SERVE = "mkdir -p /www; echo served > /www/index.html; exec httpd -f -p 8080 -h /www"
DIARY = "diary"  # an app with a volume: each start appends a line, and it serves them all
DIARY_SERVE = ("mkdir -p /www; cat /proc/sys/kernel/random/uuid >> /data/starts; cp /data/starts /www/index.html; "
               "exec httpd -f -p 8080 -h /www")
SERVE_TIMEOUT = 180
RATE = 20.0  # requests/s through the edge, whatever the latency
LOAD_SECONDS = 900.0  # longer than three upgrades take; stopped when they are done
UPGRADE_TIMEOUT = 900
MAX_FAILED_SHARE = 0.01
STORY_WORDS = ("vcapp.storage", "vcapp.controller", "vcapp.peerwatch", "mesh.meshd", "elected", "lease", "starting",
               "WARNING", "ERROR")
STORY_LINES = 200


def control_story(sim, machines: list[str]) -> str:
    """What each machine's daemon said about the controller, storage and its peers: a failed
    upgrade's story, as CI keeps no machine's logs."""
    lines = []
    for m in machines:
        for log in sorted(sim.dc.host_dir(m).glob("**/*node.log")):  # the daemon's, before and after a restart
            lines += [f"{m} {line}" for line in log.read_text(errors="replace").splitlines()
                      if any(word in line for word in STORY_WORDS)]
    return "\n".join(sorted(lines, key=lambda line: line.split(" ", 1)[1])[-STORY_LINES:])


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def previous_version() -> str:
    """The commit before the last one that changed the build (from the clone's origin if the
    clone is shallow)."""
    if git("rev-parse", "--is-shallow-repository") == "true":
        subprocess.run(["git", "-C", str(ROOT), "fetch", "-q", "--unshallow"], capture_output=True, timeout=300)
    last = git("log", "-n1", "--format=%H", "HEAD", "--", *BUILD_PATHS)
    found = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "-q", f"{last}^"],
                           capture_output=True, text=True)
    assert found.returncode == 0, (f"the repository has no commit before {last[:10]}: the upgrade test needs "
                                   "the previous version's source (a clone without --depth)")
    return found.stdout.strip()


def wheel(src: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(src)],
                   check=True, capture_output=True, timeout=600)
    return next(out.glob("vcapp-*.whl"))


def source_of(commit: str, dest: Path) -> Path:
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def work_tree(dest: Path) -> Path:
    """The work tree's files as they are (in CI, HEAD's), without build leftovers."""
    dest.mkdir()
    names = git("ls-files", "-co", "--exclude-standard", "--", *CODE_PATHS, "README.md")
    listing = subprocess.run(["tar", "-c", "-C", str(ROOT), "-T", "-"], input=names.encode(), check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=listing, check=True)
    return dest


def venv_with(wheel_file: Path, dest: Path) -> str:
    """A virtual environment with `wheel_file` installed; its dependencies are this Python's
    (a .pth file puts this environment's site-packages after its own, and their programs are
    linked into its bin)."""
    subprocess.run([sys._base_executable, "-m", "venv", str(dest)], check=True, timeout=120)
    python = dest / "bin" / "python"
    (Path(purelib(str(python))) / "vcapp-test-dependencies.pth").write_text(purelib(sys.executable) + "\n")
    for program in Path(sys.executable).parent.iterdir():  # the dependencies' programs: caddy, weed
        if not (dest / "bin" / program.name).exists():
            (dest / "bin" / program.name).symlink_to(program)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--force-reinstall", str(wheel_file)], check=True, capture_output=True, timeout=300)
    return str(python)


def purelib(python: str) -> str:
    return subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()


def daemon_python(sim, machine: str) -> str:
    pid = (sim.dc.run_dir(machine) / "vcapp-node.pid").read_text().strip()
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()


def installed_build(python: str) -> str:
    """The build installed in `python`'s environment (whatever the release knew of builds)."""
    return version.fingerprint(version.code_files(version.tree_roots(Path(purelib(python)))))


def builds(sim, machine: str) -> dict[str, str]:
    """The build of every machine that is up, as `machine`'s API lists them."""
    nodes = sim.run(machine, NEW_CLI, "nodes", "--json", timeout=60, check=False)
    return {n["name"]: (n.get("build") or "") for n in json.loads(nodes.stdout or "[]") if n.get("up")}


def through_edge(sim, app: str = APP) -> str | None:
    host = f"{app}.{platform.DOMAIN}"
    got = sim.fetch(f"https://{host}/", "-f", "-k", "--resolve", f"{host}:443:{sim.addr('edge')}", timeout=10)
    return got.stdout.strip() if got.returncode == 0 else None


def test_a_cluster_of_the_previous_version_upgraded_machine_by_machine_keeps_serving(make_sim, tmp_path_factory):
    work = tmp_path_factory.mktemp("upgrade")
    old_wheel = wheel(source_of(previous_version(), work / "old-src"), work / "old-dist")
    new_wheel = wheel(work_tree(work / "new-src"), work / "new-dist")
    old_build, new_build = upgrade.read_source(str(old_wheel)).build, upgrade.read_source(str(new_wheel)).build
    assert old_build != new_build
    old_python = venv_with(old_wheel, work / "venv")

    sim = make_sim(home=2, office=1)
    sim.dc.python = old_python
    ctx = tiny_context(tmp_path_factory.mktemp("tiny"))
    machines = [m.name for m in sim.dc.topology.machines()]
    for m in machines:
        sim.run(m, *tiny_build_command(ctx), timeout=300)
    platform.install(sim.dc, say=lambda line: None)
    assert {daemon_python(sim, m) for m in machines} == {old_python}
    assert installed_build(old_python) == old_build
    sim.run("home-1", "vcapp", "apps", "create", APP, "--image", TINY_IMAGE, "--port", "8080", "--command", SERVE,
            "--health-path", "/", "--memory", "64M", "--count", "2", timeout=60)
    sim.run("home-1", "vcapp", "apps", "create", DIARY, "--image", TINY_IMAGE, "--port", "8080", "--command",
            DIARY_SERVE, "--health-path", "/", "--memory", "64M", "--volume", "data:/data", timeout=60)
    sim.run("home-1", "vcapp", "volumes", "create", DIARY, "data", "--size", "64M", timeout=300)
    wait_for(lambda: through_edge(sim) == "served", SERVE_TIMEOUT, f"https://{APP}.{platform.DOMAIN}/ through the edge")
    written = wait_for(lambda: through_edge(sim, DIARY), SERVE_TIMEOUT, f"{DIARY} through the edge").splitlines()

    load = openloop.start(sim.dc, "client", openloop.Target(sim.addr("edge"), 443, f"{APP}.{platform.DOMAIN}",
                                                            str(platform.edge_ca(sim.dc))), RATE, LOAD_SECONDS)
    try:
        for i, m in enumerate(machines):
            started = time.monotonic()
            try:
                out = sim.run(m, NEW_CLI, "node", "upgrade", str(new_wheel), timeout=UPGRADE_TIMEOUT).stdout
            except AssertionError:
                print(control_story(sim, machines))
                raise
            print(f"{m} upgraded in {time.monotonic() - started:.1f} s:\n{out}")
            assert f"{m} runs build {new_build[:7]}" in out, out
            now = wait_for(lambda: (b := builds(sim, m)) and len(b) == len(machines) and b, 60, "every machine up")
            upgraded = {n for n, b in now.items() if b == new_build}
            assert upgraded == set(machines[:i + 1]), now  # the others still run the previous build
    finally:
        openloop.stop(load)
    results = openloop.outcomes(load, LOAD_SECONDS)
    failed = openloop.failures(results)
    print(f"upgrade under load: {len(failed)} of {len(results)} requests failed: {failed[:20]}")
    assert len(results) > 100, "the load did not run"
    assert len(failed) <= MAX_FAILED_SHARE * len(results), failed
    assert {daemon_python(sim, m) for m in machines} == {old_python}  # the same environment, upgraded in place
    assert installed_build(old_python) == new_build
    after = wait_for(lambda: through_edge(sim, DIARY), SERVE_TIMEOUT, f"{DIARY} after the upgrades").splitlines()
    assert after[:len(written)] == written, (written, after)  # what it wrote, whichever machines it ran on
