"""The cluster registry as machines see it: images survive a registry restart, and a push
to a registry that is down fails saying so, after the build itself succeeded."""

from __future__ import annotations

import pytest

from builder import registry as reg
from builder.build import build
from builder.errors import PushError
from buildpacks.stacks import STACKS
from tests.builder.conftest import APP_PORT, REGISTRY_PORT, wait_http, write_tree

pytestmark = pytest.mark.cluster

PAGE_APP = f"""\
FROM {STACKS['static'].alias}
COPY page.txt /www/index.html
CMD ["/bin/sh", "-c", "exec httpd -f -p 0.0.0.0:$PORT -h /www"]
"""


def start_registry(sim, home2):
    address = f"{home2.addr}:{REGISTRY_PORT}"
    data = sim.dc.host_dir("home-2") / "data"

    def probe(addr: str) -> bool:
        return sim.run("home-2", "curl", "-sf", "--max-time", "2", f"http://{addr}/v2/", check=False).returncode == 0

    process = reg.start(address, reg.FilesystemStorage(data / "registry"), data / "registry.yml",
                        spawn=home2.spawn, log=sim.dc.host_dir("home-2") / "log" / "registry.log", probe=probe)
    return address, process


def test_images_survive_a_registry_restart(sim, home1, home2, tmp_path):
    address, process = start_registry(sim, home2)
    tree = write_tree(tmp_path / "page", {"Dockerfile": PAGE_APP, "page.txt": "kept across restarts\n"})
    result = build(tree, "page", 5, address, **home1.build_kwargs())
    reg.stop(process)
    assert sim.fetch(f"http://{address}/v2/", host="home-1").returncode != 0

    address, process = start_registry(sim, home2)
    try:
        home2.podman("pull", "--tls-verify=false", result.image)
        digest = home2.podman("image", "inspect", "--format", "{{.Digest}}", result.image).stdout.strip()
        assert digest == result.digest
        home2.serve(result.image, "page-5", port=APP_PORT + 20)
        assert wait_http(sim, "home-1", f"http://{home2.addr}:{APP_PORT + 20}/") == "kept across restarts\n"
    finally:
        reg.stop(process)


def test_push_to_a_registry_that_is_down_says_so(home1, tmp_path):
    down = f"{home1.addr}:{REGISTRY_PORT + 99}"
    tree = write_tree(tmp_path / "nopush", {"Dockerfile": PAGE_APP, "page.txt": "x\n"})
    with pytest.raises(PushError) as err:
        build(tree, "nopush", 1, down, **home1.build_kwargs())
    assert f"is the cluster registry at {down} up?" in str(err.value)
    assert home1.podman("image", "exists", f"{down}/apps/nopush:1", check=False).returncode == 0
