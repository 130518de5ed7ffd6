"""Seconds for a machine to get a buildpack stack each of the ways builder/stacks.py has:
made from Debian (debootstrap + apt, into a fresh cache directory), loaded from the archive
cache (podman load), and pulled from the cluster registry after another machine pushed it.

Brings up a simulated cluster named `stkb`, runs the registry on home-2, loads on home-1,
pushes from there, pulls on home-3, and prints a table per stack:

    make         ensure_archive into an empty cache dir, in this namespace (needs the mirror;
                 --no-make skips it: minutes for python, more for node and go)
    load         podman load of the cached archive into home-1's fresh storage
    push         home-1 -> the cluster registry (what the machine that loads or makes it adds)
    pull         home-3 pulls it from the registry: what every other machine pays

Run as root: .venv/bin/python bench/stack_bench.py [--no-make] [STACK ...]   (default: static python)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from builder import registry, stacks
from buildpacks.stacks import STACKS
from vcapp.dev.cluster import DevCluster
from vcapp.dev.topology import default

CLUSTER = "stkb"


def timed(fn) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/stack_bench.py")
    parser.add_argument("names", nargs="*", default=["static", "python"], metavar="STACK")
    parser.add_argument("--no-make", action="store_true", help="skip making the stacks from Debian")
    args = parser.parse_args(argv)
    dc = DevCluster(CLUSTER)
    dc.up(default(CLUSTER, 3, 0))  # one LAN: home-3 reaches home-2's registry
    rows: list[tuple[str, str, float]] = []
    try:
        data = dc.host_dir("home-2") / "data"
        address = f"{dc.topology.host('home-2').addr}:5000"
        probe = lambda a: dc.run("home-2", ["curl", "-sf", f"http://{a}/v2/"]).returncode == 0  # noqa: E731
        reg = registry.start(address, registry.FilesystemStorage(data / "registry"), data / "registry.yml",
                             spawn=lambda argv, **kw: dc.spawn("home-2", argv, **kw), probe=probe)
        home1 = lambda argv, **kw: dc.spawn("home-1", argv, **kw)  # noqa: E731
        home3 = lambda argv, **kw: dc.spawn("home-3", argv, **kw)  # noqa: E731
        share = stacks.Share((address,))
        for name in args.names:
            stack = STACKS[name]
            if not args.no_make:
                with tempfile.TemporaryDirectory(prefix="stack-bench-", dir="/var/tmp") as tmp:
                    rows.append((name, "make (debootstrap/busybox -> archive)",
                                 timed(lambda: stacks.ensure_archive(stack, print, Path(tmp)))))
            stacks.ensure_archive(stack, print)  # the shared cache, as builds use it
            rows.append((name, "load the archive on home-1", timed(lambda: stacks.ensure_loaded(stack, home1))))
            rows.append((name, "push home-1 -> cluster registry",
                         timed(lambda: stacks.push_stack(stack, home1, address, None, print))))
            rows.append((name, "pull on home-3 from the registry",
                         timed(lambda: stacks.ensure_loaded(stack, home3, print, share=share))))
        registry.stop(reg)
    finally:
        dc.down()
    print(f"{'stack':<8} {'how a machine gets it':<42} {'seconds':>8}")
    for name, label, seconds in rows:
        print(f"{name:<8} {label:<42} {seconds:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
