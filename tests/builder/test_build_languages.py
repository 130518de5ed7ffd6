"""Node.js and Go buildpacks built for real on a simulated machine (apps without
dependencies: the machines have no internet), run, and asked over HTTP.

Their stacks are the big ones (nodejs+npm, golang-go); they are made on first use in the
host namespace and cached, like the others."""

from __future__ import annotations

import json

import pytest

from buildpacks.stacks import STACKS
from builder import stacks
from builder.build import build
from tests.builder.conftest import APP_PORT, Machine, wait_http, write_tree

pytestmark = pytest.mark.cluster

NODE_SERVER = """\
const http = require("http");
const port = parseInt(process.env.PORT || "8080", 10);
http.createServer((req, res) => res.end(`node ${process.version} on ${port}\\n`)).listen(port, "0.0.0.0");
"""

GO_MAIN = """\
package main

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "go %s on %s\\n", runtime.Version(), os.Getenv("PORT"))
	})
	http.ListenAndServe(":"+os.Getenv("PORT"), nil)
}
"""


@pytest.fixture(scope="module")
def home1(sim) -> Machine:
    for name in ("node", "go", "static"):
        stacks.ensure_archive(STACKS[name], on_line=print)
    return Machine(sim, "home-1")


def test_node_app_with_start_script(sim, home1, tmp_path):
    package = {"name": "hello", "version": "1.0.0", "scripts": {"start": "node server.js"}}
    tree = write_tree(tmp_path / "node", {"package.json": json.dumps(package), "server.js": NODE_SERVER})
    result = build(tree, "nodeapp", 1, None, **home1.build_kwargs())
    assert result.language == "node"
    home1.serve(result.image, "nodeapp-1", port=APP_PORT + 10)
    body = wait_http(sim, "home-2", f"http://{home1.addr}:{APP_PORT + 10}/")
    assert body.startswith("node v18.") and body.endswith(" on 8080\n")


def test_go_app_runs_as_a_static_binary_on_busybox(sim, home1, tmp_path):
    tree = write_tree(tmp_path / "go", {"go.mod": "module example.com/hello\n\ngo 1.19\n", "main.go": GO_MAIN})
    result = build(tree, "goapp", 1, None, **home1.build_kwargs())
    assert result.language == "go"
    size = home1.podman("image", "inspect", "--format", "{{.Size}}", result.image).stdout.strip()
    assert int(size) < 30_000_000  # the toolchain stayed in the build stage
    home1.serve(result.image, "goapp-1", port=APP_PORT + 11)
    body = wait_http(sim, "home-2", f"http://{home1.addr}:{APP_PORT + 11}/")
    assert body.startswith("go go1.19") and body.endswith(" on 8080\n")
