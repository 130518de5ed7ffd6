"""Node.js and Go buildpacks built for real, run, and asked over HTTP.

Their stacks are the big ones (node 321 MB, go 638 MB unpacked). Loading them into a fresh
simulated machine's storage costs a minute per run, so these builds use the host-namespace
builder storage the PyPI tests use, which keeps stacks and layers between runs. The apps
have no dependencies; the builds would work offline as well."""

from __future__ import annotations

import json

import pytest

from buildpacks.stacks import STACKS
from builder import proc, stacks
from builder.build import build
from tests.builder.conftest import get, podman, served, write_tree

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
def spawn(host_env) -> proc.Spawn:
    for name in ("node", "go", "static"):
        stacks.ensure_archive(STACKS[name], on_line=print)
    return proc.local(host_env)


def test_node_app_with_start_script(host_env, spawn, tmp_path):
    package = {"name": "hello", "version": "1.0.0", "scripts": {"start": "node server.js"}}
    tree = write_tree(tmp_path / "node", {"package.json": json.dumps(package), "server.js": NODE_SERVER})
    result = build(tree, "nodeapp", 1, None, spawn=spawn)
    assert result.language == "node"
    with served(host_env, result.image, "vcapp-builder-test-node") as url:
        body, _ = get(url)
    assert body.startswith("node v18.") and body.endswith(" on 8080\n")


def test_go_app_runs_as_a_static_binary_on_busybox(host_env, spawn, tmp_path):
    # No `go` line: the default (bookworm) Go; `go 1.19` would choose trixie's Go 1.24.
    tree = write_tree(tmp_path / "go", {"go.mod": "module example.com/hello\n", "main.go": GO_MAIN})
    result = build(tree, "goapp", 1, None, spawn=spawn)
    assert result.language == "go"
    size = podman(host_env, "image", "inspect", "--format", "{{.Size}}", result.image).stdout.strip()
    assert int(size) < 30_000_000  # the toolchain stayed in the build stage
    with served(host_env, result.image, "vcapp-builder-test-go") as url:
        body, _ = get(url)
    assert body.startswith("go go1.19") and body.endswith(" on 8080\n")
