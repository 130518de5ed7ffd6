"""`vcapp exec APP [-i N] -- CMD`: a command inside a running instance (`podman exec`), like
`kubectl exec` or `fly ssh console -C`. Unlike `vcapp run` (a fresh container of the
release), it sees the instance's own processes, files and memory.

Where it runs: the machine the instance's assignment names. The machine that took the request
runs it there itself when the instance is its own, else asks that machine over the machine
API (POST /v1/apps/<app>/instances/<instance>/exec, api/instance_exec.py) and relays its
output, as the release phase does (vcapp/deploy/release_phase.py `relay`). The output streams as it comes, then
the exit status; a command still running at its time limit, or whose caller went away, is
stopped with its `podman exec` session.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import deque
from typing import Callable

from placer.model import WEB, process_of
from runtime.podman import Container, PodmanDriver, PodmanError
from vcapp.deploy.release_phase import STOPPED, TAIL_LINES, Outcome, relay
from vcapp.state import instances, reposync
from vcapp.state.store import Store

EXEC_TIMEOUT_S = 3600.0  # as long as a one-off run: a console session or a long data fix


class ExecFailed(Exception):
    """The command could not be run at all; the message is what the admin reads."""


def choose_instance(assigned: dict[str, str], wanted: str | None, app: str) -> tuple[str, str]:
    """(instance, machine) to run in, from {instance: machine}. Without `wanted`: the first web
    instance, else the first of any type (pure)."""
    if wanted is not None:
        if wanted not in assigned:
            listed = ", ".join(sorted(assigned, key=_order)) or "none"
            raise ExecFailed(f"app {app} has no instance {wanted!r} (it has: {listed}); `vcapp ps {app}` lists them")
        return wanted, assigned[wanted]
    if not assigned:
        raise ExecFailed(f"app {app} has no instance on any machine; `vcapp ps {app}` says why")
    first = min(assigned, key=_order)
    return first, assigned[first]


def _order(instance: str) -> tuple:
    kind, slot = process_of(instance)
    return (kind != WEB, kind, slot if slot is not None else 0, instance)


def exec_args(container: str, command: str) -> list[str]:
    """The podman argv for `command` in `container`, through its shell (pure)."""
    return ["podman", "exec", container, "sh", "-c", command]


def running_container(containers: list[Container], app: str, instance: str, node: str,
                      release: str | None = None) -> Container:
    """The running container of app/instance among this machine's (pure). While a release
    replaces another, the old container still runs beside the new one until it has drained:
    the assigned release's container is chosen, else the one started last."""
    running = [c for c in containers if c.app == app and c.instance == instance and c.running]
    if running:
        return max(running, key=lambda c: (c.release == release, c.started_at))
    raise ExecFailed(f"instance {instance} of {app} is not running on {node} right now (starting, moving or "
                     f"crashed); `vcapp ps {app}` shows its state")


def execute(store: Store, me: str, app: str, instance: str | None, command: str, log: Callable[[str], None],
            here_only: bool = False, timeout: float = EXEC_TIMEOUT_S) -> Outcome:
    """Run `command` in the instance (the first web one when None), here or on its machine."""
    records = instances.assignments(store, app)
    instance, node = choose_instance({i: a.get("node", "") for i, a in records.items()}, instance, app)
    if node == me:
        return run_here(app, instance, command, log, me, timeout, release=records[instance].get("release"))
    if here_only:
        raise ExecFailed(f"instance {instance} of {app} moved to {node} meanwhile; run it again")
    return _run_on(store, node, app, instance, command, log)


def _run_on(store: Store, node: str, app: str, instance: str, command: str, log: Callable[[str], None]) -> Outcome:
    if node not in reposync.live_apis(store):
        raise ExecFailed(f"instance {instance} of {app} runs on {node}, which does not answer; try again once it "
                         "is back or the instance has moved")
    return relay(store, node, f"/v1/apps/{app}/instances/{instance}/exec", {"command": command}, log, ExecFailed)


def run_here(app: str, instance: str, command: str, log: Callable[[str], None], me: str,
             timeout: float = EXEC_TIMEOUT_S, release: str | None = None) -> Outcome:
    """`command` in this machine's running container of app/instance (of `release` when it
    runs); its output to `log`."""
    driver = PodmanDriver.from_env()
    try:
        container = running_container(driver.list(), app, instance, me, release)
    except PodmanError as e:
        raise ExecFailed(f"podman on {me} does not answer: {e}") from None
    log(f"-----> in instance {instance} of {app} on {me} ({container.name})")
    started, tail = time.monotonic(), deque(maxlen=TAIL_LINES)
    proc = subprocess.Popen(exec_args(container.name, command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, errors="replace")
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            log(line)
        code = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - started
    return Outcome(STOPPED if seconds >= timeout else code, seconds, tuple(tail))
