"""Seconds to build the sample Python app and push it to the cluster registry, cold and warm.

Brings up a simulated cluster named `bldb`, runs the registry on
home-2, and builds on home-1 three ways, printing a table:

    stack cold   the stack archive is made from Debian (only when not cached yet)
    machine cold the machine's storage has no stack and no layers (load + full build)
    warm         the same tree again: every layer from the cache
    warm, edit   app.py changed: only the COPY layer and the commit are redone

Run as root: .venv/bin/python bench/build_bench.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from builder import registry, stacks
from builder.build import build
from buildpacks.stacks import STACKS
from vcapp.dev.cluster import DevCluster
from vcapp.dev.topology import default

CLUSTER = "bldb"
APP = """\
import os
from http.server import BaseHTTPRequestHandler, HTTPServer


class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"VERSION\\n")


HTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"""


def timed(fn) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def main() -> int:
    dc = DevCluster(CLUSTER)
    dc.up(default(CLUSTER, 2, 1, "easy"))
    rows: list[tuple[str, float]] = []
    try:
        rows.append(("stack archive (0 if cached)", timed(lambda: stacks.ensure_archive(STACKS["python"]))))
        data = dc.host_dir("home-2") / "data"
        address = f"{dc.topology.host('home-2').addr}:5000"
        probe = lambda a: dc.run("home-2", ["curl", "-sf", f"http://{a}/v2/"]).returncode == 0  # noqa: E731
        reg = registry.start(address, registry.FilesystemStorage(data / "registry"), data / "registry.yml",
                             spawn=lambda argv, **kw: dc.spawn("home-2", argv, **kw), probe=probe)
        spawn = lambda argv, **kw: dc.spawn("home-1", argv, **kw)  # noqa: E731
        cgroup = dc.host_env("home-1")["VCAPP_CGROUP_PARENT"]
        with tempfile.TemporaryDirectory() as tmp:
            tree = Path(tmp)
            (tree / "requirements.txt").write_text("")
            (tree / "app.py").write_text(APP.replace("VERSION", "v1"))
            go = lambda n: build(tree, "bench", n, address, spawn=spawn, cgroup_parent=cgroup)  # noqa: E731
            rows.append(("machine cold (load stack, all layers) + push", timed(lambda: go(1))))
            rows.append(("warm, same tree + push", timed(lambda: go(2))))
            (tree / "app.py").write_text(APP.replace("VERSION", "v3"))
            rows.append(("warm, app.py edited + push", timed(lambda: go(3))))
        registry.stop(reg)
    finally:
        dc.down()
    print(f"{'python sample, build on home-1, registry on home-2':<50} {'seconds':>8}")
    for label, seconds in rows:
        print(f"{label:<50} {seconds:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
