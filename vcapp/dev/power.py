"""Power for simulated hosts: boot, exec, and a real power-off.

A host's processes are found two ways, so nothing it started survives a power-off:
- a cgroup per host (vcapp/<cluster>/<host>) that every process it starts is put in, and
  that the node runtime uses as the parent cgroup of the host's containers;
- its network namespace: any process living in it belongs to the host.

Power-off freezes the cgroup tree (so nothing forks while we kill), SIGKILLs every member,
thaws the whole tree, and waits until it is empty. A cgroup below the host's may be frozen on
its own, a container `podman pause`d (the node's volume compaction pauses its app for a
moment): a frozen task takes no signal, so it is thawed too, as a machine losing its power
loses that container's pause with it. A booted host has one `init` process that owns its
UTS namespace (its own hostname); commands run "on" the host enter that namespace and its
network namespace.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from vcapp.dev import netns

CGROUP_FS = Path("/sys/fs/cgroup")
# cgroup v1 hierarchies used on hybrid machines: pids to list members, freezer to freeze.
# Not memory: the session supervisor tracks its processes by their memory cgroup.
V1_CONTROLLERS = ("pids", "freezer")
KILL_TIMEOUT = 10.0  # a SIGKILLed process normally exits in milliseconds; 10 s means stuck


def cgroup_v1() -> bool:
    return (CGROUP_FS / "freezer").is_dir()


def cgroup_dirs(rel: str) -> list[Path]:
    """The directories of cgroup `rel` in every hierarchy we manage."""
    if cgroup_v1():
        return [CGROUP_FS / c / rel for c in V1_CONTROLLERS if (CGROUP_FS / c).is_dir()]
    return [CGROUP_FS / rel]


def _freezer(rel: str) -> Path:
    return CGROUP_FS / "freezer" / rel if cgroup_v1() else CGROUP_FS / rel


def make_cgroup(rel: str) -> None:
    for d in cgroup_dirs(rel):
        d.mkdir(parents=True, exist_ok=True)


def join_cgroup(rel: str) -> None:
    """Move the calling process into cgroup `rel` (used as a preexec_fn)."""
    pid = str(os.getpid())
    for d in cgroup_dirs(rel):
        (d / "cgroup.procs").write_text(pid)


def cgroup_pids(rel: str) -> set[int]:
    """Every process in cgroup `rel` and below."""
    pids: set[int] = set()
    base = cgroup_dirs(rel)[0]
    if not base.is_dir():
        return pids
    for dirpath, _, files in os.walk(base):
        if "cgroup.procs" in files:
            try:
                text = Path(dirpath, "cgroup.procs").read_text()
            except OSError:
                continue
            pids.update(int(p) for p in text.split())
    return pids


def _freeze(rel: str) -> None:
    path = _freezer(rel)
    if not path.is_dir():
        return
    if cgroup_v1():
        (path / "freezer.state").write_text("FROZEN")
        deadline = time.monotonic() + 2.0
        while (path / "freezer.state").read_text().strip() != "FROZEN":
            if time.monotonic() > deadline:
                break  # kill anyway: the tree is thawed after the SIGKILLs
            time.sleep(0.01)
    else:
        (path / "cgroup.freeze").write_text("1")


def _thaw_tree(rel: str) -> None:
    """Thaw cgroup `rel` and every cgroup below it, parents first."""
    base = _freezer(rel)
    if not base.is_dir():
        return
    name = "freezer.state" if cgroup_v1() else "cgroup.freeze"
    for dirpath, _, files in os.walk(base):
        if name in files:
            try:
                Path(dirpath, name).write_text("THAWED" if cgroup_v1() else "0")
            except OSError:  # removed meanwhile (its last task exited)
                pass


def namespace_pids(ns: str) -> set[int]:
    """Processes whose network namespace is `ns`."""
    want = netns.inode(netns.ns_path(ns))
    if want is None:
        return set()
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and netns.inode(f"/proc/{entry}/ns/net") == want:
            pids.add(int(entry))
    return pids


def alive(pid: int) -> bool:
    """Is `pid` a live process (not gone, not a zombie waiting to be reaped)?"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_all(rel: str, ns: str | None) -> int:
    """SIGKILL every process of a host (its cgroup tree and its namespace). Returns how many."""
    _freeze(rel)
    victims = cgroup_pids(rel) | (namespace_pids(ns) if ns else set())
    victims.discard(os.getpid())
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _thaw_tree(rel)
    deadline = time.monotonic() + KILL_TIMEOUT
    while any(alive(p) for p in victims):
        if time.monotonic() > deadline:
            stuck = sorted(p for p in victims if alive(p))
            raise RuntimeError(f"processes {stuck} did not die within {KILL_TIMEOUT:.0f}s of SIGKILL")
        time.sleep(0.02)
    return len(victims)


def remove_cgroup(rel: str) -> None:
    """Remove cgroup `rel` and its children, deepest first (they must be empty)."""
    for base in cgroup_dirs(rel):
        if not base.is_dir():
            continue
        for dirpath, _, _ in sorted(os.walk(base), key=lambda w: -len(w[0])):
            for attempt in range(50):
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)  # zombies are still being reaped


def boot_init(rel: str, ns: str, hostname: str, log: Path) -> int:
    """Start a host's init: a process holding the host's UTS namespace (its hostname).

    It runs in a new session so it outlives the command that booted it."""
    make_cgroup(rel)
    cmd = netns.enter(ns) + [
        "unshare", "--uts", "--", "sh", "-c", 'hostname "$1" && exec sleep infinity', "init", hostname
    ]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            start_new_session=True, preexec_fn=lambda: join_cgroup(rel),
        )
    deadline = time.monotonic() + 5.0
    while _uts_hostname(proc.pid) != hostname:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"init of {hostname} did not start; see {log}")
        time.sleep(0.01)
    return proc.pid


def _uts_hostname(pid: int) -> str | None:
    try:
        out = subprocess.run(
            ["nsenter", f"--uts=/proc/{pid}/ns/uts", "hostname"], capture_output=True, text=True
        )
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def init_alive(rel: str, pid: int | None) -> bool:
    """Is `pid` still this host's init (and not a recycled pid)?"""
    return bool(pid) and alive(pid) and pid in cgroup_pids(rel)


def host_command(ns: str, init_pid: int, cmd: list[str]) -> list[str]:
    """Command line that runs `cmd` on a host: in its network and UTS namespaces."""
    return ["nsenter", f"--net={netns.ns_path(ns)}", f"--uts=/proc/{init_pid}/ns/uts", "--", *cmd]
