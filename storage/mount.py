"""Mounting a volume on a machine (FUSE, `weed mount`) and proving the mount is real.

An instance must never start on a volume directory that is not mounted: a mount point whose
FUSE daemon is still waiting for its filer (or died) is a plain local directory, and what an
app writes there is lost when the instance moves. `verify_mounted` checks the kernel's own
table (/proc/self/mountinfo: a fuse mount exactly at that path) and that the mount answers.

    weed mount -filer=<local filer first, then the others> -filer.path=/volumes/<app>/<name>
               -dir=<host path> -collection=vol_<app>_<name> -collectionQuotaMB=<size>
               -df.logical   (quota counts the bytes the app wrote, not bytes x copies)
               -cacheDir=<run_dir>/storage/cache/<app>_<name>

The size limit is SeaweedFS's own: over quota, writes fail with ENOSPC ("No space left on
device"), which is what apps already handle for a full disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from storage.host import Host, StorageError
from storage.plan import ClusterPlan
from storage.volumes import Volume, get_volume

MOUNT_TIMEOUT = 30.0  # weed mount is up within ~2 s when a filer answers; 30 s means none does
ANSWER_TIMEOUT = 5.0  # a live FUSE mount answers stat() in milliseconds; a hung one never does
POLL = 0.1
UMOUNT_TIMEOUT = 30.0  # a lazy umount returns at once; 30 s only guards against a wedged kernel
FUSE_TYPES = ("fuse.seaweedfs", "fuse")
MAX_STACKED = 8  # mounts one path may hold on top of each other, at most, in practice
# A mount's log is appended to across mounts and reboots (a failed upload, a refused metadata
# flush: what an app's I/O error came from); past this size it is moved to <log>.1 at the
# next mount, so two of these at most are kept per volume.
MOUNT_LOG_MAX_BYTES = 8 << 20


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    return field.encode().decode("unicode_escape")


def mount_entry(path: Path, mountinfo: str = "/proc/self/mountinfo") -> dict | None:
    """The mount table entry whose mount point is exactly `path` (the last, if stacked)."""
    # Not realpath(path): that stats the mount point itself, which blocks for as long as a
    # stuck FUSE daemon does (no timeout). The parent is a plain directory.
    want, found = os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(path))),
                               os.path.basename(os.path.abspath(path))), None
    with open(mountinfo) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rest = left.split(), right.split()
            if len(fields) >= 5 and rest and _unescape(fields[4]) == want:
                found = {"point": want, "fstype": rest[0], "source": _unescape(rest[1]) if len(rest) > 1 else ""}
    return found


def _answers(path: Path, timeout: float) -> str | None:
    """None if stat(path) succeeds within `timeout`, else why not."""
    result: list[str | None] = []

    def probe() -> None:
        try:
            os.listdir(path)  # answered by the FUSE daemon via its filer (statvfs would also
            # wait for a master, which stalls for ~20 s after the master leader's machine died)
            result.append(None)
        except OSError as e:
            result.append(f"{e.strerror} (errno {e.errno})")

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return result[0] if result else f"no answer within {timeout:.0f}s (hung FUSE daemon)"


def verify_mounted(path: Path, timeout: float = ANSWER_TIMEOUT) -> dict:
    """Raise StorageError unless `path` is a live FUSE mount; return its mount entry."""
    entry = mount_entry(path)
    if entry is None or entry["fstype"] not in FUSE_TYPES:
        what = "nothing is mounted there" if entry is None else f"it is a {entry['fstype']} mount"
        raise StorageError(f"{path} is not a mounted volume ({what}): refusing to use it; "
                           "mount it with storage.mount.mount_volume first")
    problem = _answers(path, timeout)
    if problem:
        raise StorageError(f"volume mount {path} is dead: {problem}; unmount it and mount again")
    return entry


def state_path(run_dir: Path, app: str, name: str) -> Path:
    """Where the pid of app/name's weed mount on this machine is kept."""
    return Path(run_dir) / "storage" / "mounts" / f"{app}_{name}.json"


def mount_command(plan: ClusterPlan, host_name: str, vol: Volume, host_path: Path, run_dir: Path,
                  weed: str) -> list[str]:
    cache = Path(run_dir) / "storage" / "cache" / f"{vol.app}_{vol.name}"
    return [
        weed, "mount", f"-filer={plan.filer_list(plan.machine(host_name))}", f"-filer.path={vol.path}",
        f"-dir={host_path}", f"-collection={vol.collection}", f"-collectionQuotaMB={vol.size_mb}",
        "-df.logical", f"-cacheDir={cache}",
    ]


def log_path(log_dir: Path, app: str, name: str) -> Path:
    """Where the weed mounts of app/name on this machine log."""
    return Path(log_dir) / f"mount-{app}_{name}.log"


def _rotated(log: Path) -> Path:
    """`log`, its old content moved to log.1 once it grew past MOUNT_LOG_MAX_BYTES."""
    with contextlib.suppress(FileNotFoundError):
        if log.stat().st_size > MOUNT_LOG_MAX_BYTES:
            log.replace(log.with_name(log.name + ".1"))
    return log


def mount_volume(plan: ClusterPlan, host: Host, app: str, name: str, host_path: Path, run_dir: Path,
                 weed: str, timeout: float = MOUNT_TIMEOUT, size_mb: int | None = None, fresh: bool = False,
                 log_dir: Path | None = None) -> Path:
    """Mount volume app/name at host_path on `host` and return host_path once the kernel
    shows a live FUSE mount there (the path to bind-mount into the container).
    Idempotent: an existing live mount is kept, unless `fresh` (this machine has just taken
    the volume over: a mount it kept from before may have missed what another machine wrote
    meanwhile, its metadata cache is not the filer's). Raises StorageError otherwise.
    `size_mb` known (the control plane keeps it): no read of the volume's record in the
    filer, which needs a volume server holding it to answer (slow while one is cut off).
    The mount logs to `log_dir` (the machine's storage log directory, which outlives a
    reboot; default: beside its pid file in `run_dir`)."""
    host_path = Path(host_path)
    vol = Volume(app, name, size_mb) if size_mb else get_volume(plan, host, app, name)
    if (entry := mount_entry(host_path)) and entry["fstype"] in FUSE_TYPES:
        if not fresh:
            verify_mounted(host_path)
            return host_path
        stop_mount(run_dir, app, name, host_path)
    host_path.mkdir(parents=True, exist_ok=True)
    argv = mount_command(plan, host.name, vol, host_path, run_dir, weed)
    Path(argv[-1].split("=", 1)[1]).mkdir(parents=True, exist_ok=True)
    state = state_path(run_dir, app, name)
    state.parent.mkdir(parents=True, exist_ok=True)
    if log_dir is None:
        log = state.with_suffix(".log")
    else:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        log = _rotated(log_path(log_dir, app, name))
    _stop_previous(state)  # a mount that never came up still holds its cache's locks
    pid = host.spawn(argv, state.parent, log)
    state.write_text(json.dumps({"pid": pid, "path": str(host_path)}))
    try:
        wait_mounted(host_path, pid, log, timeout)
    except StorageError:
        _stop_previous(state)
        unmount_volume(host_path)
        raise
    return host_path


def _stop_previous(state: Path) -> None:
    """Kill the weed mount recorded in `state`, if it still runs, and forget it."""
    try:
        pid = int(json.loads(state.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return
    if _is_weed_mount(pid):  # not a process that took the pid over since
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ChildProcessError, ProcessLookupError):
            pass
    state.unlink(missing_ok=True)


def _weed_mount_argv(pid: int) -> list[bytes] | None:
    """The command line of process `pid` if it is a weed mount, else None."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return argv if len(argv) > 1 and argv[0].endswith(b"weed") and argv[1] == b"mount" else None


def _is_weed_mount(pid: int) -> bool:
    return _weed_mount_argv(pid) is not None


def wait_mounted(path: Path, pid: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        entry = mount_entry(path)
        if entry and entry["fstype"] in FUSE_TYPES:
            verify_mounted(path, timeout=max(ANSWER_TIMEOUT, deadline - time.monotonic()))
            return
        if not Path(f"/proc/{pid}").exists() or time.monotonic() > deadline:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-8:]) if log.exists() else ""
            raise StorageError(f"weed mount of {path} did not come up within {timeout:.0f}s "
                               f"(is a filer reachable? is the directory empty?). Log tail:\n{tail}")
        time.sleep(POLL)


def unmount_volume(host_path: Path) -> None:
    """Unmount (lazily, so a busy mount still goes) if something is mounted at host_path."""
    if mount_entry(host_path):
        _umount(host_path)


def _umount(host_path: Path) -> None:
    subprocess.run(["umount", "-l", str(host_path)], capture_output=True, timeout=UMOUNT_TIMEOUT)


def stop_mount(run_dir: Path, app: str, name: str, host_path: Path) -> bool:
    """Kill app/name's weed mount on this machine at once and detach its mount point; whether
    there was one. SIGKILL, not an unmount: a weed mount retries a failed metadata flush for
    up to 30 s, and each flush replaces the file's whole entry in the filer (every chunk
    listed, the chunks it does not list deleted), so a flush from a machine that lost the
    volume, landing after the new owner wrote, erases what the new owner wrote."""
    state, mounted = state_path(run_dir, app, name), mount_entry(host_path) is not None
    had = mounted or state.exists()
    _stop_previous(state)
    if mounted:
        _umount(host_path)
    return had


def stop_every_mount(path: Path) -> int:
    """End every weed mount at `path`: stacked ones too (a mount whose daemon died under it can
    sit below a newer one) and any weed mount process serving it; the number of processes
    killed. For a machine that leaves its cluster, where nothing may go on writing."""
    want = f"-dir={Path(path)}".encode()
    killed = 0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and want in (_weed_mount_argv(int(proc.name)) or []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
                killed += 1
    for _ in range(MAX_STACKED):
        if mount_entry(path) is None:
            break
        _umount(path)
    return killed
