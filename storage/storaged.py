"""The per-machine storage daemon logic (storaged): keeps this machine's SeaweedFS processes running as planned.

One reconcile step, safe to run at any time and again after a crash:
    desired  machine_processes(plan, me)              (storage/plan.py)
    actual   observe(): <run_dir>/storage/<name>.json, the pid + digest of the spec it was
             started with, checked against /proc (a power-off wipes run_dir, so a booted
             machine starts from "nothing runs")
    decide   (pure) start what is missing or dead, restart what runs with another spec,
             stop what the plan no longer names
    act      converge() carries the actions out

Data lives under <data_dir>/storage/<process>/, logs under <data_dir>/storage/log/.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from storage import shell
from storage.host import Host, StorageError
from storage.plan import (FILER_PORT, MASTER_PORT, VOLUME_PORT, ClusterPlan, ProcessSpec, machine_processes,
                          storage_dir)

STOP_TIMEOUT = 10.0  # weed flushes its volume index on SIGTERM; 10 s means it is stuck
READY_TIMEOUT = 60.0  # masters elect a leader in ~5 s; volume servers register on the next heartbeat
POLL = 0.25
PROBE_TIMEOUT = 2.0  # a local process answers its status page in ms; 2 s means not (yet) up


def spec_digest(spec: ProcessSpec) -> str:
    blob = json.dumps([spec.argv, spec.cwd, sorted(spec.files.items())]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _state_file(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / "storage" / f"{name}.json"


def running(run_dir: Path, name: str) -> dict | None:
    """What the agent started for process `name` and is still alive, else None."""
    path = _state_file(run_dir, name)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if _alive(state["pid"]) else None


def stop(run_dir: Path, name: str) -> None:
    """Stop process `name` if it runs: SIGTERM, then SIGKILL after STOP_TIMEOUT."""
    state = running(run_dir, name)
    if state:
        pid = state["pid"]
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    _state_file(run_dir, name).unlink(missing_ok=True)


def _start(host: Host, spec: ProcessSpec, data_dir: Path, run_dir: Path) -> int:
    base = storage_dir(data_dir)
    cwd = base / spec.cwd
    cwd.mkdir(parents=True, exist_ok=True)
    (base / "log").mkdir(parents=True, exist_ok=True)
    for rel, content in spec.files.items():  # 0600: filer.toml holds the filer's etcd login
        fd = os.open(cwd / rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a file from before keeps its mode through O_CREAT
        with os.fdopen(fd, "w") as f:
            f.write(content)
    pid = host.spawn(list(spec.argv), cwd, base / "log" / f"{spec.name}.log")
    state = _state_file(run_dir, spec.name)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"pid": pid, "digest": spec_digest(spec), "argv": list(spec.argv)}))
    return pid


PROCESSES = ("master", "volume", "filer")


@dataclass(frozen=True)
class Start:
    """(Re)start a process: whatever runs under its name is stopped first."""

    spec: ProcessSpec


@dataclass(frozen=True)
class Stop:
    name: str


def decide(desired: list[ProcessSpec], digests: dict[str, str]) -> list[Start | Stop]:
    """Pure: what brings this machine to `desired`, given the spec digest of each process that
    runs (`digests`: name -> digest; a process that does not run is absent)."""
    starts = [Start(spec) for spec in desired if digests.get(spec.name) != spec_digest(spec)]
    wanted = {spec.name for spec in desired}
    # Stops first: a master the plan retires must be gone before this machine's master restarts
    # as the cluster's lone one (see stray_peers), and a stop takes up to STOP_TIMEOUT.
    return [Stop(name) for name in sorted(digests) if name not in wanted] + starts


def observe(run_dir: Path) -> dict[str, str]:
    """The spec digest of each storage process that runs on this machine."""
    return {name: state["digest"] for name in PROCESSES if (state := running(run_dir, name))}


def converge(plan: ClusterPlan, host: Host, data_dir: Path, run_dir: Path, weed: str) -> list[str]:
    """Bring this machine's storage processes to the plan. Returns the names (re)started."""
    actions = decide(machine_processes(plan, host.name, weed), observe(run_dir))
    for action in actions:
        if isinstance(action, Start):
            stop(run_dir, action.spec.name)
            _start(host, action.spec, data_dir, run_dir)
        else:
            stop(run_dir, action.name)
    return [a.spec.name for a in actions if isinstance(a, Start)]


def stray_peers(plan: ClusterPlan, host: Host) -> list[str]:
    """The Raft peers of this machine's master when the plan makes it the cluster's only one:
    masters the plan retired that its leader admitted in the seconds before they stopped
    (storage/plan.py: _master). Non-empty means it has no quorum and must start afresh."""
    me = plan.machine(host.name)
    if plan.masters != (me,):
        return []
    peers = (shell.cluster_status(host, me, PROBE_TIMEOUT) or {}).get("Peers")
    return [str(p) for p in peers] if isinstance(peers, list) else []


def wait_ready(plan: ClusterPlan, host: Host, timeout: float = READY_TIMEOUT) -> None:
    """Wait until, seen from `host`, a master leads and this machine's volume server and
    filer answer. Raises StorageError naming what is not up."""
    me = plan.machine(host.name)
    checks = {
        "master leader": [f"http://{m.addr}:{MASTER_PORT}/cluster/status" for m in plan.masters],
        "volume server": [f"http://{me.addr}:{VOLUME_PORT}/status"],
        "filer": [f"http://{me.addr}:{FILER_PORT}/?pretty=y"],
    }
    if me.name in plan.volume_off:  # its data moved off: no volume server runs there
        del checks["volume server"]
    deadline = time.monotonic() + timeout
    pending = dict(checks)
    while pending:
        for what, urls in list(pending.items()):
            for url in urls:  # any master that knows a leader will do: one of them may be down
                out = host.run(["curl", "-sf", "--max-time", str(PROBE_TIMEOUT), "-H", "Accept: application/json",
                                url], timeout=PROBE_TIMEOUT + 5)
                if out.returncode == 0 and (what != "master leader" or '"Leader"' in out.stdout):
                    del pending[what]
                    break
        if pending and time.monotonic() > deadline:
            raise StorageError(f"on {host.name}: {', '.join(pending)} not answering after {timeout:.0f}s; "
                               f"see the logs under $VCAPP_DATA_DIR/storage/log/")
        if pending:
            time.sleep(POLL)
