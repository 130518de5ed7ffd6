"""Making the buildpacks' base "stack" images from Debian packages, caching and loading them.

A stack is made once per machine (or once per dev host: the cache is a plain directory)
and kept as an OCI archive, /var/cache/vcapp/stacks/<name>-<suite>-<recipe hash>.oci.tar:

    debootstrap --variant=minbase --include=<packages> bookworm rootfs <mirror>
      -> trim docs, apt lists and caches
      -> tar | podman import (a throw-away storage) -> podman save --format oci-archive

It is loaded into a machine's image storage (`podman load`) the first time a build there
needs it. debootstrap needs the Debian mirror, so archives are made in the network
namespace of the process that calls `ensure_archive`, directly or through the forward proxy
in `proxy_env` (HTTP_PROXY...: debootstrap and apt honour it; a simulated machine's only way
out); loading needs no network.
Make them ahead of time with `python -m builder.stacks [python node go static]`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from buildpacks.stacks import MIRROR, STACKS, Stack
from builder import proc
from builder.errors import BuildError, StackError

CACHE_DIR = Path(os.environ.get("VCAPP_STACK_CACHE", "/var/cache/vcapp/stacks"))
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static: one binary, no shared libraries
# golang-go pulls ~100 packages and 400 MB; on a slow mirror that is many minutes.
DEBOOTSTRAP_TIMEOUT = 1800.0
IMPORT_TIMEOUT = 600.0  # tar + import + save of a 400 MB root file system
LOAD_TIMEOUT = 300.0  # podman load of a cached archive: seconds normally, minutes on slow disks
INSPECT_TIMEOUT = 30.0
# What a container image does not need from a debootstrapped system.
TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt",
        "var/lib/apt/lists", "var/log")


def archive_path(stack: Stack, cache_dir: Path | None = None) -> Path:
    return (cache_dir or CACHE_DIR) / f"{stack.name}-{stack.suite}-{stack.key}.oci.tar"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One maker of a given archive at a time (concurrent builds wait for the first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _debootstrap(stack: Stack, rootfs: Path, on_line: proc.LineSink, deb_cache: Path,
                 proxy_env: dict[str, str] | None = None) -> None:
    """minbase + the stack's packages. debootstrap's own resolver cannot pick providers of
    virtual packages (npm fails on them), so the packages go in with apt inside the new root."""
    deb_cache.mkdir(parents=True, exist_ok=True)
    argv = ["debootstrap", "--variant=minbase", f"--cache-dir={deb_cache}", stack.suite, str(rootfs), MIRROR]
    spawn = proc.local({**os.environ, **proxy_env}) if proxy_env else proc.local()
    _step(stack, "debootstrap", argv, DEBOOTSTRAP_TIMEOUT, on_line, spawn)
    if stack.packages:
        _step(stack, "apt-get install", _apt_command(stack, rootfs, deb_cache), DEBOOTSTRAP_TIMEOUT, on_line, spawn)
    for sub in TRIM:
        shutil.rmtree(rootfs / sub, ignore_errors=True)
        (rootfs / sub).mkdir(parents=True, exist_ok=True)


def _apt_command(stack: Stack, rootfs: Path, deb_cache: Path) -> list[str]:
    """apt-get in a chroot of rootfs, with its own /proc and our .deb cache bind-mounted."""
    (deb_cache / "partial").mkdir(parents=True, exist_ok=True)
    archives = rootfs / "var/cache/apt/archives"
    script = (
        f"mount --bind {deb_cache} {archives} && "
        f"chroot {rootfs} sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive "
        f"apt-get install -y -q --no-install-recommends {' '.join(stack.packages)}'"
    )
    return ["unshare", "--mount", "--fork", "--pid", f"--mount-proc={rootfs / 'proc'}", "sh", "-ec", script]


def _step(stack: Stack, what: str, argv: list[str], timeout: float, on_line: proc.LineSink,
          spawn: proc.Spawn) -> None:
    try:
        proc.check(spawn, argv, timeout, on_line)
    except BuildError as e:
        raise StackError(
            f"{what} for stack {stack.name!r} failed: check that {MIRROR} is reachable from this machine "
            f"and that {', '.join(stack.packages) or 'minbase'} exist in Debian {stack.suite}", e.tail,
        ) from None


def _busybox(rootfs: Path) -> None:
    if not BUSYBOX.exists():
        raise StackError(f"{BUSYBOX} is missing: install Debian's busybox-static (scripts/install does)")
    for sub in ("bin", "tmp", "etc/ssl/certs", "srv/www"):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    subprocess.run([str(rootfs / "bin" / "busybox"), "--install", "-s", str(rootfs / "bin")], check=True)
    # busybox --install links to the path it was run from: point them at /bin/busybox instead.
    for link in (rootfs / "bin").iterdir():
        if link.is_symlink():
            link.unlink()
            link.symlink_to("busybox")
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")


def _import(stack: Stack, rootfs: Path, work: Path, out: Path, on_line: proc.LineSink) -> None:
    """rootfs -> OCI archive, through a throw-away podman storage under `work`."""
    podman = ["podman", "--root", str(work / "storage"), "--runroot", str(work / "run"), "--storage-driver", "vfs"]
    tarball = work / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."], check=True,
                   timeout=IMPORT_TIMEOUT)
    changes = [a for k, v in stack.environment for a in ("--change", f"ENV={k}={v}")]
    changes += ["--change", 'CMD=["/bin/sh"]']
    proc.check(proc.local(), podman + ["import", *changes, str(tarball), stack.image], IMPORT_TIMEOUT, on_line)
    proc.check(proc.local(), podman + ["save", "--format", "oci-archive", "-o", str(out), stack.image],
               IMPORT_TIMEOUT, on_line)


def ensure_archive(stack: Stack, on_line: proc.LineSink | None = None, cache_dir: Path | None = None,
                   proxy_env: dict[str, str] | None = None) -> Path:
    """The cached OCI archive of `stack`, made first if missing (minutes: progress goes to
    on_line), its packages fetched through the proxy in `proxy_env` when given."""
    say = on_line or (lambda line: None)
    path = archive_path(stack, cache_dir)
    with _locked(path):
        if path.exists():
            return path
        say(f"-----> making stack {stack.name} ({stack.image}) from Debian {stack.suite}: "
            "first build only, this takes a few minutes")
        with tempfile.TemporaryDirectory(prefix=f"stack-{stack.name}-", dir=path.parent) as tmp:
            work = Path(tmp)
            rootfs = work / "rootfs"
            if stack.source == "busybox":
                _busybox(rootfs)
            else:
                _debootstrap(stack, rootfs, say, path.parent.parent / "debs", proxy_env)
            partial = work / "out.oci.tar"
            _import(stack, rootfs, work, partial, say)
            os.replace(partial, path)
        say(f"-----> stack {stack.name} cached at {path} ({path.stat().st_size / 1e6:.0f} MB)")
    return path


def has_image(spawn: proc.Spawn, image: str) -> bool:
    outcome = proc.stream(spawn, ["podman", "image", "exists", image], None, INSPECT_TIMEOUT)
    return outcome.returncode == 0


def ensure_loaded(stack: Stack, spawn: proc.Spawn, on_line: proc.LineSink | None = None,
                  cache_dir: Path | None = None, proxy_env: dict[str, str] | None = None) -> None:
    """Make sure the machine behind `spawn` has the stack image in its storage."""
    if has_image(spawn, stack.image):
        _alias(stack, spawn)
        return
    archive = ensure_archive(stack, on_line, cache_dir, proxy_env)
    if on_line:
        on_line(f"-----> loading stack {stack.name} into this machine's image storage")
    try:
        proc.check(spawn, ["podman", "load", "-q", "-i", str(archive)], LOAD_TIMEOUT)
    except Exception as e:
        raise StackError(f"could not load {archive}: delete it to have it made again", getattr(e, "tail", [])) from None
    if not has_image(spawn, stack.image):
        raise StackError(f"{archive} loaded but holds no {stack.image}: delete it to have it made again")
    _alias(stack, spawn)


def _alias(stack: Stack, spawn: proc.Spawn) -> None:
    """Point the stable name (stack-python:bookworm) at the current recipe's image."""
    proc.check(spawn, ["podman", "tag", stack.image, stack.alias], INSPECT_TIMEOUT)


def main(argv: list[str]) -> int:
    """Make stack archives ahead of the first build: python -m builder.stacks [NAME ...]."""
    names = argv or sorted(STACKS)
    unknown = [n for n in names if n not in STACKS]
    if unknown:
        print(f"unknown stack(s) {', '.join(unknown)}; known: {', '.join(sorted(STACKS))}")
        return 2
    for name in names:
        print(ensure_archive(STACKS[name], on_line=print))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
