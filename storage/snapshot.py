"""A filer directory as a tar file and back: what a backup keeps of a volume or a bucket.

    export   weed mount -readOnly of the directory at a private mount point, then
             tar --numeric-owner (owners, modes, symlinks, times as the app left them)
    import   weed mount of the directory for writing (the volume's collection and quota),
             then tar -x --same-owner into it; the caller holds the volume's writer key

The read-only mount reads through the filer what the app's own mount has flushed: a copy as
consistent as the app's data after a power cut at that moment (what a filesystem snapshot
gives too). Both mounts are this module's own (a temporary directory, a process it kills),
so they never meet the runtime's mounts or their bookkeeping.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from storage.host import Host, StorageError
from storage.mount import unmount_volume, wait_mounted
from storage.plan import ClusterPlan
from storage.volumes import BUCKETS_ROOT, Volume

MOUNT_TIMEOUT = 30.0
UNMOUNT_TIMEOUT = 120.0  # s: the mount uploads the last files a restore wrote before it exits
TAR_TIMEOUT = 3600.0  # s: a volume of tens of GB through a FUSE mount on a slow disk


@contextlib.contextmanager
def _mounted(plan: ClusterPlan, host: Host, path: str, run_dir: Path, weed: str, flags: list[str]) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="vcapp-snapshot-", dir=run_dir))
    point, cache, log = work / "mnt", work / "cache", work / "mount.log"
    point.mkdir()
    cache.mkdir()
    argv = [weed, "mount", f"-filer={plan.filer_list(plan.machine(host.name))}", f"-filer.path={path}",
            f"-dir={point}", f"-cacheDir={cache}", *flags]
    pid = host.spawn(argv, work, log)
    try:
        wait_mounted(point, pid, log, MOUNT_TIMEOUT)
        yield point
    finally:
        _unmount(point, pid)
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)


def _unmount(point: Path, pid: int) -> None:
    """A plain umount, then the weed mount's own exit: it uploads what it still holds before
    it goes. Lazily and by force only when that does not happen within UNMOUNT_TIMEOUT."""
    subprocess.run(["umount", str(point)], capture_output=True, timeout=UNMOUNT_TIMEOUT)
    deadline = time.monotonic() + UNMOUNT_TIMEOUT
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child: watch /proc instead
            done = 0 if Path(f"/proc/{pid}").exists() else pid
        if done:
            return
        time.sleep(0.1)
    unmount_volume(point)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _tar(argv: list[str], what: str) -> None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=TAR_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise StorageError(f"{what}: tar took over {TAR_TIMEOUT:.0f} s") from None
    if out.returncode != 0:
        raise StorageError(f"{what}: {out.stderr.strip()[-500:] or f'tar exit {out.returncode}'}")


def export_tree(plan: ClusterPlan, host: Host, path: str, dest: Path, run_dir: Path, weed: str) -> int:
    """Write the files under filer directory `path` to the tar file `dest`; returns its size."""
    with _mounted(plan, host, path, run_dir, weed, ["-readOnly"]) as point:
        _tar(["tar", "--numeric-owner", "-C", str(point), "-cf", str(dest), "."], f"reading {path}")
    return dest.stat().st_size


def import_tree(plan: ClusterPlan, host: Host, path: str, src: Path, run_dir: Path, weed: str,
                flags: list[str] | None = None) -> None:
    """Unpack the tar file `src` into filer directory `path` (made already, nobody else writing)."""
    with _mounted(plan, host, path, run_dir, weed, flags or []) as point:
        _tar(["tar", "--numeric-owner", "--same-owner", "--same-permissions", "-C", str(point), "-xf", str(src)],
             f"writing {path}")


def export_volume(plan: ClusterPlan, host: Host, vol: Volume, dest: Path, run_dir: Path, weed: str) -> int:
    return export_tree(plan, host, vol.path, dest, run_dir, weed)


def import_volume(plan: ClusterPlan, host: Host, vol: Volume, src: Path, run_dir: Path, weed: str) -> None:
    """Into volume `vol` (its writer key held): its collection and quota, as the runtime mounts it."""
    import_tree(plan, host, vol.path, src, run_dir, weed,
                [f"-collection={vol.collection}", f"-collectionQuotaMB={vol.size_mb}", "-df.logical"])


def bucket_path(bucket: str) -> str:
    """A bucket's filer directory (SeaweedFS puts what is written there in the bucket's collection)."""
    return f"{BUCKETS_ROOT}/{bucket}"
