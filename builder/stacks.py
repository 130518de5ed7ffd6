"""Getting the buildpacks' base "stack" images into a machine's image storage: from the
cluster registry, from a cached archive, or made from Debian packages.

A build gets a stack the first way that works, each step a line in its log:

    1. this machine's image storage already has it (podman image exists)
    2. the cluster registry: <registry>/stacks/<name>:<suite>-<recipe key>, pulled from each
       registry of the `Share` in turn (the machines' auth file; plain HTTP on the mesh)
    3. the archive cache, /var/cache/vcapp/stacks/<name>-<suite>-<key>.oci.tar: podman load
    4. made: debootstrap --variant=minbase bookworm rootfs <mirror> (through the build proxy)
         -> apt-get install the stack's packages -> trim docs, apt lists and caches
         -> tar | podman import (a throw-away storage) -> podman save --format oci-archive
       then loaded as in 3.
    After 3 or 4 the image is pushed to the Share's first registry (this machine's), so every
    other machine pulls it (step 2) instead of making it again: once per cluster.

Steps 3-4 run under `Share.exclusive`: a lock the caller holds across the cluster (vcapp
passes a lease-bound etcd key), so two machines needing the same missing stack at once make
it once; the second pulls what the first pushed. builder/ knows no cluster: the registries,
the auth file and the lock are passed in.

debootstrap needs the Debian mirror, so archives are made in the network namespace of the
process that calls `ensure_archive`, directly or through the forward proxy in `proxy_env`
(HTTP_PROXY...: debootstrap and apt honour it; a simulated machine's only way out). The
mirror is asked first, so a stack that cannot be made says so in seconds, with what to run.
Make them ahead of time with `python -m builder.stacks [--push HOST:PORT --authfile FILE] [NAME ...]`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Iterator

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
# A pull or push of a stack over the cluster network (go: ~200 MB compressed) or loopback.
TRANSFER_TIMEOUT = 600.0
# A cluster registry answers /v2/ in milliseconds; one that does not within this is skipped
# (podman itself would wait for TCP connect timeouts, 3 tries: minutes for a lost machine).
REGISTRY_PROBE_TIMEOUT = 3.0
# The mirror answers a HEAD of a Release file in well under a second; 15 s is unreachable.
MIRROR_PROBE_TIMEOUT = 15.0
# What a container image does not need from a debootstrapped system.
TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt",
        "var/lib/apt/lists", "var/log")


@dataclass(frozen=True)
class Share:
    """Where the cluster keeps stack images, given by the caller.

    `registries` (host:port): pulled from in this order; the first is this machine's, which
    a stack loaded or made here is pushed to. `authfile`: their credentials
    (containers-auth.json). `exclusive(name)`: a context manager held across the cluster
    while this machine loads or makes stack `name` (<name>-<suite>-<key>); None: no lock
    beyond this machine's own."""

    registries: tuple[str, ...]
    authfile: Path | None = None
    exclusive: Callable[[str], ContextManager] | None = None


def archive_path(stack: Stack, cache_dir: Path | None = None) -> Path:
    return (cache_dir or CACHE_DIR) / f"{stack.name}-{stack.suite}-{stack.key}.oci.tar"


def shared_name(stack: Stack) -> str:
    """The stack's name in locks and files: <name>-<suite>-<recipe key>."""
    return f"{stack.name}-{stack.suite}-{stack.key}"


def registry_ref(stack: Stack, registry: str) -> str:
    """Where the cluster registry at `registry` keeps the stack."""
    return f"{registry}/stacks/{stack.name}:{stack.suite}-{stack.key}"


def _title(stack: Stack) -> str:
    return f"{stack.name} ({stack.suite})"


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


def _proxy_url(proxy_env: dict[str, str] | None) -> str | None:
    env = proxy_env if proxy_env is not None else os.environ
    return env.get("HTTP_PROXY") or env.get("http_proxy") or None


def what_to_run(stack: Stack, cache_dir: Path | None = None) -> str:
    """The ways out when this machine cannot make `stack` (the end of a StackError)."""
    return (f"let builds reach the mirror through a proxy that does (`vcapp settings set build.proxy "
            f"http://HOST:PORT`), or make the stack on a machine that reaches it (`python -m builder.stacks "
            f"{_key_of(stack)}`) and copy {archive_path(stack, cache_dir).name} into {cache_dir or CACHE_DIR} "
            "here; the next build loads it and shares it with the cluster")


def _key_of(stack: Stack) -> str:
    return next((k for k, v in STACKS.items() if v == stack), stack.name)


def check_mirror(stack: Stack, proxy_env: dict[str, str] | None = None, cache_dir: Path | None = None,
                 timeout: float = MIRROR_PROBE_TIMEOUT) -> None:
    """StackError naming the mirror, the proxy and what to run when the mirror does not
    answer from here (HEAD of the suite's Release file, through the proxy when given)."""
    url = f"{MIRROR}/dists/{stack.suite}/Release"
    proxy = _proxy_url(proxy_env)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy} if proxy else {}))
    try:
        with opener.open(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return
    except Exception as e:  # URLError, HTTPError (the proxy's 403), timeouts, resets
        why = f"{type(e).__name__}: {getattr(e, 'reason', None) or e}"
    via = f" through the build proxy {proc.redact(proxy)}" if proxy else " (no build proxy is set)"
    raise StackError(f"cannot make stack {_title(stack)}: the Debian mirror {MIRROR} does not answer from this "
                     f"machine{via} ({why}); {what_to_run(stack, cache_dir)}")


def _step(stack: Stack, what: str, argv: list[str], timeout: float, on_line: proc.LineSink,
          spawn: proc.Spawn) -> None:
    try:
        proc.check(spawn, argv, timeout, on_line)
    except BuildError as e:
        raise StackError(
            f"{what} for stack {_title(stack)} failed: check that {MIRROR} stays reachable from this machine "
            f"and that {', '.join(stack.packages) or 'minbase'} exist in Debian {stack.suite}; "
            f"{what_to_run(stack)}", e.tail,
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
    """rootfs -> OCI archive, through a throw-away podman storage under `work` (its runroot
    in the temp dir: podman refuses one longer than 50 characters, as a deep cache dir gives)."""
    with tempfile.TemporaryDirectory(prefix="vcapp-stack-run-") as runroot:
        _import_into(stack, rootfs, work, out, on_line,
                     ["podman", "--root", str(work / "storage"), "--runroot", runroot, "--storage-driver", "vfs"])


def _import_into(stack: Stack, rootfs: Path, work: Path, out: Path, on_line: proc.LineSink,
                 podman: list[str]) -> None:
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
        if stack.source != "busybox":
            check_mirror(stack, proxy_env, cache_dir)
        say(f"-----> making stack {_title(stack)} from Debian packages ({stack.image}): "
            "once per cluster, this takes a few minutes")
        started = time.monotonic()
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
        say(f"-----> made stack {_title(stack)} in {time.monotonic() - started:.0f} s: cached at {path} "
            f"({_mb(path.stat().st_size)})")
    return path


def _mb(size: float) -> str:
    return f"{size / 1e6:.0f} MB" if size >= 1e6 else f"{size / 1e6:.1f} MB"


def has_image(spawn: proc.Spawn, image: str) -> bool:
    outcome = proc.stream(spawn, ["podman", "image", "exists", image], None, INSPECT_TIMEOUT)
    return outcome.returncode == 0


def ensure_loaded(stack: Stack, spawn: proc.Spawn, on_line: proc.LineSink | None = None,
                  cache_dir: Path | None = None, proxy_env: dict[str, str] | None = None,
                  share: Share | None = None) -> None:
    """Make sure the machine behind `spawn` has the stack image in its storage: already
    there, pulled from the cluster registry, loaded from the archive cache, or made (the
    module's header); loaded or made ones are pushed to `share`'s first registry."""
    say = on_line or (lambda line: None)
    if has_image(spawn, stack.image):
        _alias(stack, spawn)
        return
    if not share or not share.registries:
        _load(stack, spawn, say, cache_dir, proxy_env)
        _alias(stack, spawn)
        return
    if _pull(stack, spawn, share, say):
        _alias(stack, spawn)
        return
    lock = share.exclusive(shared_name(stack)) if share.exclusive else contextlib.nullcontext()
    with lock:
        # Whoever held the lock before us has pushed it meanwhile (or failed): ask again.
        if not has_image(spawn, stack.image) and not _pull(stack, spawn, share, say, quiet=True):
            _load(stack, spawn, say, cache_dir, proxy_env)
            push_stack(stack, spawn, share.registries[0], share.authfile, say)
    _alias(stack, spawn)


def _pull(stack: Stack, spawn: proc.Spawn, share: Share, say: proc.LineSink, quiet: bool = False) -> bool:
    """Pull the stack from the first of `share`'s registries that has it; whether one had."""
    if not quiet:
        say(f"-----> pulling stack {_title(stack)} from the cluster registry ({', '.join(share.registries)})")
    for registry in share.registries:
        if not answers(spawn, registry):
            if not quiet:
                say(f"-----> the registry at {registry} does not answer within {REGISTRY_PROBE_TIMEOUT:.0f} s: "
                    "skipped")
            continue
        ref = registry_ref(stack, registry)
        started = time.monotonic()
        argv = ["podman", "pull", "-q", "--tls-verify=false", *_auth(share.authfile), ref]
        outcome = proc.stream(spawn, argv, None, TRANSFER_TIMEOUT)
        if outcome.returncode == 0:
            proc.check(spawn, ["podman", "tag", ref, stack.image], INSPECT_TIMEOUT)
            say(f"-----> pulled stack {_title(stack)} from {registry}: {_mb(_size(spawn, stack.image))} "
                f"in {time.monotonic() - started:.1f} s")
            return True
        text = "\n".join(outcome.tail)
        if not quiet and not any(absent in text for absent in ("manifest unknown", "name unknown")):
            say(f"-----> the registry at {registry} did not give it: {outcome.tail[-1] if outcome.tail else '?'}")
    if not quiet:
        say(f"-----> stack {_title(stack)} is not in the cluster registry yet: this machine loads or makes it "
            "and shares it")
    return False


def _load(stack: Stack, spawn: proc.Spawn, say: proc.LineSink, cache_dir: Path | None,
          proxy_env: dict[str, str] | None) -> None:
    """From the archive cache (made first when missing) into the machine's storage."""
    archive = ensure_archive(stack, say, cache_dir, proxy_env)
    say(f"-----> loading stack {_title(stack)} from {archive} ({_mb(archive.stat().st_size)}) into this "
        "machine's image storage")
    started = time.monotonic()
    try:
        proc.check(spawn, ["podman", "load", "-q", "-i", str(archive)], LOAD_TIMEOUT)
    except Exception as e:
        raise StackError(f"could not load {archive}: delete it to have it made again", getattr(e, "tail", [])) from None
    if not has_image(spawn, stack.image):
        raise StackError(f"{archive} loaded but holds no {stack.image}: delete it to have it made again")
    say(f"-----> loaded stack {_title(stack)} in {time.monotonic() - started:.1f} s")


def push_stack(stack: Stack, spawn: proc.Spawn, registry: str, authfile: Path | None,
               on_line: proc.LineSink | None = None) -> bool:
    """Push the machine's stack image to the cluster registry at `registry`; whether it went.
    A failed push is a warning: this build goes on, the next machine loads or makes its own."""
    say = on_line or (lambda line: None)
    ref = registry_ref(stack, registry)
    if not answers(spawn, registry):
        say(f"-----> warning: could not push stack {_title(stack)}: the cluster registry at {registry} does not "
            f"answer within {REGISTRY_PROBE_TIMEOUT:.0f} s")
        return False
    started = time.monotonic()
    argv = ["podman", "push", "-q", "--tls-verify=false", *_auth(authfile), stack.image, f"docker://{ref}"]
    outcome = proc.stream(spawn, argv, None, TRANSFER_TIMEOUT)
    if outcome.returncode != 0:
        why = outcome.tail[-1] if outcome.tail else ("timed out" if outcome.timed_out else "?")
        say(f"-----> warning: could not push stack {_title(stack)} to the cluster registry at {registry}: {why}")
        return False
    say(f"-----> pushed stack {_title(stack)} to the cluster registry at {registry} in "
        f"{time.monotonic() - started:.1f} s: the other machines pull it from there")
    return True


def answers(spawn: proc.Spawn, registry: str) -> bool:
    """Whether the registry at `registry` answers /v2/ from the machine behind `spawn` (200,
    or 401 when it wants credentials) within REGISTRY_PROBE_TIMEOUT."""
    argv = ["curl", "-s", "-o", "/dev/null", "--max-time", f"{REGISTRY_PROBE_TIMEOUT:.0f}", "-w", "%{http_code}",
            f"http://{registry}/v2/"]
    try:
        outcome = proc.stream(spawn, argv, None, REGISTRY_PROBE_TIMEOUT + INSPECT_TIMEOUT)
    except FileNotFoundError:
        return True  # no curl here: let podman find out
    return bool(outcome.tail) and outcome.tail[-1].strip() in ("200", "401")


def _auth(authfile: Path | None) -> list[str]:
    return ["--authfile", str(authfile)] if authfile else []


def _size(spawn: proc.Spawn, image: str) -> float:
    try:
        out = proc.check(spawn, ["podman", "image", "inspect", "--format", "{{.Size}}", image], INSPECT_TIMEOUT)
        return float(out[-1])
    except (BuildError, ValueError, IndexError):
        return 0.0


def _alias(stack: Stack, spawn: proc.Spawn) -> None:
    """Point the stable name (stack-python:bookworm) at the current recipe's image."""
    proc.check(spawn, ["podman", "tag", stack.image, stack.alias], INSPECT_TIMEOUT)


def main(argv: list[str]) -> int:
    """Make stack archives ahead of the first build, and with --push share them:
    python -m builder.stacks [--push HOST:PORT --authfile FILE] [NAME ...]."""
    parser = argparse.ArgumentParser(prog="python -m builder.stacks", description=main.__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"default: all of {', '.join(sorted(STACKS))}")
    parser.add_argument("--push", metavar="HOST:PORT", help="a cluster registry to push the stacks to")
    parser.add_argument("--authfile", type=Path, help="its credentials (a node's registry auth.json)")
    args = parser.parse_args(argv)
    names = args.names or sorted(STACKS)
    unknown = [n for n in names if n not in STACKS]
    if unknown:
        print(f"unknown stack(s) {', '.join(unknown)}; known: {', '.join(sorted(STACKS))}")
        return 2
    for name in names:
        try:
            print(ensure_archive(STACKS[name], on_line=print))
            if args.push:
                ensure_loaded(STACKS[name], proc.local(), print)
                if not push_stack(STACKS[name], proc.local(), args.push, args.authfile, print):
                    return 1
        except StackError as e:
            print(e)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
