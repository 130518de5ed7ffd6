"""The cluster registry as machines see it: images survive a registry restart, and a push
to a registry that is down fails saying so, after the build itself succeeded."""

from __future__ import annotations

import json
import random
import time

import pytest

from builder import proc
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


WEED_READY_TIMEOUT = 60.0  # weed server (master, volume, filer, s3) answers S3 in ~6 s here


@pytest.fixture
def seaweed_s3(sim, home1):
    """A one-machine SeaweedFS (master, volume, filer, S3 gateway) on home-1, bucket `registry`.

    weed reaches gRPC peers on "its own host" through /tmp/seaweedfs-*-grpc-<port>.sock, and
    simulated machines share /tmp: ports of this test's own keep it from talking to another
    cluster's weed."""
    data = sim.dc.host_dir("home-1") / "data" / "weed"
    data.mkdir(parents=True, exist_ok=True)
    base = random.randrange(20000, 29000, 4)
    ports = {"master": base, "volume": base + 1, "filer": base + 2, "s3": base + 3}
    server = sim.spawn("home-1", "weed", "server", f"-dir={data}", f"-ip={home1.addr}", "-s3", "-volume.max=5",
                       *(f"-{name}.port={port}" for name, port in ports.items()),
                       f"-filer.localSocket={data}/filer.sock", f"-s3.localSocket={data}/s3.sock",
                       log=sim.dc.host_dir("home-1") / "log" / "weed.log")
    endpoint = f"http://{home1.addr}:{ports['s3']}"
    deadline = time.monotonic() + WEED_READY_TIMEOUT
    while sim.fetch(f"{endpoint}/", "-o", "/dev/null", host="home-1", timeout=2).returncode != 0:
        assert time.monotonic() < deadline, "SeaweedFS S3 did not come up: see home-1's log/weed.log"
        time.sleep(0.5)
    sim.run("home-1", "sh", "-c",
            f"echo 's3.bucket.create -name registry' | weed shell -master={home1.addr}:{ports['master']}", timeout=60)
    yield endpoint
    proc.kill_group(server, grace=2.0)  # weed drains for ~10 s on SIGTERM; its data is throw-away


def test_registry_on_s3_storage_serves_blobs_itself(sim, home1, home2, seaweed_s3, tmp_path):
    address = f"{home2.addr}:{REGISTRY_PORT + 1}"
    data = sim.dc.host_dir("home-2") / "data"
    storage = reg.S3Storage(seaweed_s3, "registry", "any-key", "any-secret")

    def probe(addr: str) -> bool:
        return sim.run("home-2", "curl", "-sf", "--max-time", "2", f"http://{addr}/v2/", check=False).returncode == 0

    process = reg.start(address, storage, data / "registry-s3.yml", spawn=home2.spawn, probe=probe,
                        log=sim.dc.host_dir("home-2") / "log" / "registry-s3.log")
    try:
        tree = write_tree(tmp_path / "s3page", {"Dockerfile": PAGE_APP, "page.txt": "stored in S3\n"})
        result = build(tree, "s3page", 1, address, **home1.build_kwargs())
        listing = sim.fetch(f"{seaweed_s3}/registry?list-type=2&prefix=registry/docker/registry/v2/repositories/apps/",
                            host="home-2").stdout
        assert "apps/s3page/_manifests" in listing  # the registry wrote to the bucket, not to disk
        manifest = json.loads(sim.fetch(f"http://{address}/v2/apps/s3page/manifests/1", "-H",
                                        "Accept: application/vnd.oci.image.manifest.v1+json", host="home-2").stdout)
        layer = manifest["layers"][-1]["digest"]
        blob = sim.fetch(f"http://{address}/v2/apps/s3page/blobs/{layer}", "-o", "/dev/null",
                         "-w", "%{http_code}", host="home-2").stdout
        assert blob == "200"  # served by the registry itself: no 307 to a pre-signed S3 URL
        home2.podman("pull", "--tls-verify=false", result.image)
        home2.serve(result.image, "s3page-1", port=APP_PORT + 21)
        assert wait_http(sim, "home-1", f"http://{home2.addr}:{APP_PORT + 21}/") == "stored in S3\n"
    finally:
        reg.stop(process)
