"""Seconds from `git push` to the image in the cluster registry, cold cache and warm, for examples/hello.

Brings up a fresh simulated cluster the way `vcapp dev up` does (vcapp/dev/platform.py:
node daemons, `cluster init` with the mesh edge, joins), creates the sample app, and pushes
it twice with the real `git` CLI from the first machine, timestamping every line the push
streams back:

    cold   the first push: for examples/hello the machine's storage is new, the python stack
           is loaded (`podman load`) and every layer is built (the stack archive itself is
           made beforehand, reported apart); then a Flask app (flask and gunicorn fetched
           through the build proxy), whose first push finds the stack loaded
    warm   the same machine, second push of a one-line change to app.py: the stack and the
           venv layer come from the cache, only the COPY layer and the commit are redone
    elsewhere  a third one-line change pushed to another machine's git endpoint: it builds
           there, a machine that never built the app (its step layers come from the first
           machine's registry cache); its ratio is against warm, in the same run

For each push: the builder's own figure (`-----> built ... in X s`, build + push to the
registry), the wall time from starting `git push` to that line (image in the registry: adds
the receive-pack, the checkout and vcapp.toml), the wall time to `-----> vN live` (adds the
placer, the pull on the chosen machine, the start and the health check), to `vN durable` (the
image's copies on more machines, made while it starts) and to `-----> Released`.
The cold/warm ratio is printed beside them.

Run as root: .venv/bin/python bench/deploy_bench.py [--name gG1] [--keep]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from builder import stacks
from buildpacks.stacks import STACKS
from vcapp.dev import platform
from vcapp.dev.cluster import DevCluster
from vcapp.dev.topology import default

DEFAULT_NAME = "gG1"
SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hello"
PUSH_TIMEOUT = 900.0  # s: a cold push loads the python stack into a new storage (minutes on a loaded host)
BUILT = re.compile(r"-----> built \S+ in ([0-9.]+) s")
RELEASED = "-----> Released"
# the release serves (its instances healthy); before this line existed, "Released" came then
LIVE = re.compile(r"-----> v\d+ live ")
DURABLE = re.compile(r"-----> v\d+ durable: ")
STACK_LOAD = "-----> loading stack"  # builder/stacks.py: the stack goes into a storage without it
CACHE_HIT = "Using cache"  # buildah --layers: a step taken from the layer cache
REMOTE_CACHE_HIT = "Cache pulled from remote"  # buildah --cache-from: that layer came from a registry
GIT_ID = ["-c", "user.name=bench", "-c", "user.email=bench@vcapp.test"]
# Issue 21's app: dependencies fetched at build time through the build proxy. Pushed after the
# sample app, so its "cold" push finds the python stack loaded (a warm stack image).
FLASK_APP = {
    "requirements.txt": "flask\ngunicorn\n",
    "Procfile": "web: gunicorn --bind 0.0.0.0:8080 app:app\n",
    "vcapp.toml": "port = 8080\n\n[health]\npath = \"/\"\n",
    "app.py": "from flask import Flask\n\napp = Flask(__name__)\n\n\n@app.get(\"/\")\ndef index():\n"
              "    return \"flask on vcapp\\n\"\n",
}


@dataclass
class Push:
    """One timed `git push`: seconds since it started for the lines that matter."""

    label: str
    builder_s: float | None = None  # the builder's own `built ... in X s`
    to_registry_s: float | None = None  # wall: push started -> the `built` line arrived
    to_live_s: float | None = None  # wall: push started -> `vN live` (or `Released` without that line)
    to_durable_s: float | None = None  # wall: push started -> `vN durable` (its image copied)
    to_released_s: float | None = None  # wall: push started -> `Released`
    exit_s: float | None = None
    returncode: int | None = None
    stack_loaded: bool = False
    cached_steps: int = 0
    remote_steps: int = 0  # of them, layers pulled from another machine's registry cache
    lines: list[str] = field(default_factory=list)
    timed: list[tuple[float, str]] = field(default_factory=list)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *GIT_ID, *args], check=True, capture_output=True)


def timed_push(dc: DevCluster, host: str, repo: Path, remote: str, label: str) -> Push:
    """`git push` on `host`, reading its stderr as it streams (lines end in \\n or \\r)."""
    result = Push(label)
    start = time.monotonic()
    proc = dc.spawn(host, ["git", "-C", str(repo), "push", remote, "main"], stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE)
    killer = threading.Timer(PUSH_TIMEOUT, proc.kill)
    killer.start()
    try:
        for raw in iter(lambda: proc.stderr.readline(), b""):
            for line in re.split(r"[\r\n]", raw.decode(errors="replace")):
                _note(result, line.strip(), time.monotonic() - start)
        result.returncode = proc.wait()
    finally:
        killer.cancel()
    result.exit_s = time.monotonic() - start
    return result


def _note(result: Push, line: str, at: float) -> None:
    if not line:
        return
    result.lines.append(line)
    result.timed.append((at, line))
    result.stack_loaded |= STACK_LOAD in line
    result.cached_steps += CACHE_HIT in line
    result.remote_steps += REMOTE_CACHE_HIT in line
    built = BUILT.search(line)
    if built and result.to_registry_s is None:
        result.builder_s, result.to_registry_s = float(built.group(1)), at
    if LIVE.search(line) and result.to_live_s is None:
        result.to_live_s = at
    if DURABLE.search(line) and result.to_durable_s is None:
        result.to_durable_s = at
    if RELEASED in line and result.to_released_s is None:
        result.to_released_s = at
        result.to_live_s = result.to_live_s or at


def fresh_cluster(name: str) -> DevCluster:
    dc = DevCluster(name)
    if dc.exists():
        raise SystemExit(f"cluster {name} exists: pick another --name, or take it down first")
    dc.up(default(name))
    return dc


def run(dc: DevCluster, plat: platform.Platform, app: str, files: Path | dict[str, str]) -> list[Push]:
    """Create `app` from `files` (a directory to copy, or name -> text) and push it cold, warm and
    elsewhere from the first machine."""
    dc.run(plat.first, ["vcapp", "apps", "create", app], timeout=60).check_returncode()
    repo = dc.host_dir(plat.first) / "data" / "bench" / app
    if isinstance(files, Path):
        shutil.copytree(files, repo)
    else:
        repo.mkdir(parents=True)
        for name, text in files.items():
            (repo / name).write_text(text)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", app)
    remote = f"{plat.api_url.replace('http://', f'http://admin:{plat.admin_token}@')}/git/{app}.git"
    cold = timed_push(dc, plat.first, repo, remote, f"{app} cold (first push: its layers all built)")
    with open(repo / "app.py", "a") as f:
        f.write("# one-line change for the warm push\n")
    git(repo, "commit", "-q", "-am", "one line")
    warm = timed_push(dc, plat.first, repo, remote, f"{app} warm (second push, app.py changed)")
    with open(repo / "app.py", "a") as f:
        f.write("# one-line change for the push to another machine\n")
    git(repo, "commit", "-q", "-am", "one more line")
    listed = dc.run(plat.first, ["vcapp", "nodes", "--json"], timeout=60)
    other = next(n for n in json.loads(listed.stdout) if n["name"] != plat.first and n.get("up"))
    there = f"http://admin:{plat.admin_token}@{other['addr']}:7180/git/{app}.git"  # its API, on the mesh
    elsewhere = timed_push(dc, plat.first, repo, there, f"{app} elsewhere (to {other['name']}, which never built it)")
    return [cold, warm, elsewhere]


def _fmt(value: float | None) -> str:
    return f"{value:8.1f}" if value is not None else "       -"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:9.1f}x" if a is not None and b else "         -"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def report(title: str, cold: Push, warm: Push, elsewhere: Push) -> None:
    print(f"\n{title:<44} {'cold':>8} {'warm':>8} {'cold/warm':>10} {'elsewhere':>10} "
          f"{'else/warm':>10}")
    for label, attr in (("builder: built + pushed to registry (s)", "builder_s"),
                        ("wall: git push -> image in registry (s)", "to_registry_s"),
                        ("wall: git push -> live, serving (s)", "to_live_s"),
                        ("wall: git push -> durable, copied (s)", "to_durable_s"),
                        ("wall: git push -> Released (s)", "to_released_s"),
                        ("wall: git push exits (s)", "exit_s")):
        a, b, c = getattr(cold, attr), getattr(warm, attr), getattr(elsewhere, attr)
        print(f"{label:<44} {_fmt(a)} {_fmt(b)} {_ratio(a, b)}   {_fmt(c)} {_ratio(c, b)}")
    print(f"{'stack loaded into the storage':<44} {_yes(cold.stack_loaded):>8} {_yes(warm.stack_loaded):>8}"
          f"{'':>11} {_yes(elsewhere.stack_loaded):>8}")
    print(f"{'build steps from the layer cache':<44} {cold.cached_steps:>8} {warm.cached_steps:>8}"
          f"{'':>11} {elsewhere.cached_steps:>8}")
    print(f"{'  of them pulled from another machine':<44} {cold.remote_steps:>8} {warm.remote_steps:>8}"
          f"{'':>11} {elsewhere.remote_steps:>8}")
    for push in (cold, warm, elsewhere):
        print(f"\n{push.label}: the push's lines after the image reached the registry")
        print("\n".join(f"  {at:6.1f} s  {line[:110]}" for at, line in push.timed
                        if push.to_registry_s is not None and at >= push.to_registry_s))
        if push.returncode != 0 or push.to_released_s is None:
            print(f"\n{push.label}: git push exited {push.returncode}; its last lines:")
            print("\n".join(push.lines[-20:]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default=DEFAULT_NAME, help="simulated cluster name (must not exist)")
    parser.add_argument("--keep", action="store_true", help="leave the cluster up afterwards")
    args = parser.parse_args()
    start = time.monotonic()
    stacks.ensure_archive(STACKS["python"], on_line=lambda line: None)
    archive_s = time.monotonic() - start
    print(f"bringing up simulated cluster {args.name}", flush=True)
    dc = fresh_cluster(args.name)
    try:
        plat = platform.install(dc, say=lambda line: print(f"  {line}", flush=True))
        pushes = run(dc, plat, platform.SAMPLE_APP, SAMPLE)
        flask = run(dc, plat, "flaskapp", FLASK_APP)
    finally:
        if not args.keep:
            dc.down()
    print(f"\npython stack archive ready beforehand: {archive_s:.1f} s (0 when cached)")
    report("examples/hello by git push", *pushes)
    report("a Flask app (flask, gunicorn from PyPI)", *flask)
    return 0 if all(p.returncode == 0 for p in pushes + flask) else 1


if __name__ == "__main__":
    sys.exit(main())
