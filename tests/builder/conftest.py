"""Fixtures for builder tests: simulated machines as build hosts, the stack archives, a
cluster registry on home-2, sample app trees, and a way to run a built image and ask it.

Stack archives are made once in the host's network namespace (debootstrap needs the
Debian mirror) and cached under /var/cache/vcapp/stacks between runs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from buildpacks.stacks import STACKS
from builder import proc
from builder import registry as reg
from builder import stacks

APP_START_TIMEOUT = 30.0  # a python/busybox server starts in well under a second; 30 s is broken
POLL = 0.2
REGISTRY_PORT = 5000
APP_PORT = 18080

HELLO_PY = '''\
import os
from http.server import BaseHTTPRequestHandler, HTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from python on port {os.environ['PORT']}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Hello).serve_forever()
'''


def write_tree(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@dataclass
class Machine:
    """A simulated machine as the builder sees it: where to spawn, which cgroup to use."""

    sim: object
    name: str

    def spawn(self, argv: list[str], **kw) -> subprocess.Popen:
        return self.sim.dc.spawn(self.name, argv, **kw)

    @property
    def cgroup(self) -> str:
        return self.sim.dc.host_env(self.name)["VCAPP_CGROUP_PARENT"]

    @property
    def addr(self) -> str:
        return self.sim.addr(self.name)

    def build_kwargs(self) -> dict:
        return {"spawn": self.spawn, "cgroup_parent": self.cgroup}

    def podman(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.sim.run(self.name, "podman", *args, check=check, timeout=timeout)

    def serve(self, image: str, name: str, port: int = APP_PORT) -> None:
        """Run an image the way the runtime will: default network, PORT set, port published."""
        self.podman("rm", "-f", name, check=False)
        self.podman("run", "-d", "--name", name, "--cgroup-parent", f"{self.cgroup}/{name}",
                    "-e", "PORT=8080", "-p", f"{port}:8080", image)

    def processes(self) -> str:
        pids = self.sim.dc.host_pids(self.name)
        return "\n".join(Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                         for p in pids if Path(f"/proc/{p}/cmdline").exists())


def wait_http(sim, from_host: str, url: str, timeout: float = APP_START_TIMEOUT) -> str:
    """GET url from a machine until it answers 200; return the body (fails after timeout)."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = sim.run(from_host, "curl", "-sS", "-f", "--max-time", "2", url, check=False, timeout=10)
        if last.returncode == 0:
            return last.stdout
        time.sleep(POLL)
    raise AssertionError(f"{url} did not answer from {from_host} within {timeout} s: {last.stderr if last else ''}")


@pytest.fixture(scope="session")
def stack_archives() -> dict[str, Path]:
    """The python and static stack archives (made in the host namespace the first time)."""
    return {name: stacks.ensure_archive(STACKS[name], on_line=print) for name in ("python", "static")}


@pytest.fixture(scope="module")
def home1(sim, stack_archives) -> Machine:
    return Machine(sim, "home-1")


@pytest.fixture(scope="module")
def home2(sim, stack_archives) -> Machine:
    return Machine(sim, "home-2")


@pytest.fixture(scope="module")
def cluster_registry(sim, home2):
    """The distribution registry running on home-2, on its LAN address."""
    address = f"{home2.addr}:{REGISTRY_PORT}"
    data = sim.dc.host_dir("home-2") / "data"

    def probe(addr: str) -> bool:
        return sim.run("home-2", "curl", "-sf", "--max-time", "2", f"http://{addr}/v2/", check=False).returncode == 0

    process = reg.start(address, reg.FilesystemStorage(data / "registry"), data / "registry.yml",
                        spawn=home2.spawn, log=sim.dc.host_dir("home-2") / "log" / "registry.log", probe=probe)
    yield address
    reg.stop(process)


# ---- builds in the host's network namespace (where PyPI is reachable) -------------------

STORE = Path("/var/tmp/vcapp-builder-test")
PODMAN_TIMEOUT = 120.0  # pull/run of a ~100 MB image from a loopback registry: seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def host_env() -> dict[str, str]:
    """This namespace, with a container storage of the tests' own."""
    conf = STORE / "storage.conf"
    STORE.mkdir(parents=True, exist_ok=True)
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{STORE}/storage"\n'
                    f'runroot = "/run/vcapp-builder-test"\n')
    return dict(os.environ, CONTAINERS_STORAGE_CONF=str(conf))


@pytest.fixture(scope="module")
def local_registry(tmp_path_factory, host_env):
    data = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{free_port()}"
    process = reg.start(address, reg.FilesystemStorage(data / "blobs"), data / "config.yml",
                        spawn=proc.local(host_env), log=data / "registry.log")
    yield address
    reg.stop(process)


def podman(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run(["podman", *args], env=env, capture_output=True, text=True, timeout=PODMAN_TIMEOUT)
    assert out.returncode == 0, f"podman {' '.join(args)}: {out.stderr}"
    return out


def get(url: str) -> tuple[str, str]:
    deadline = time.monotonic() + APP_START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read().decode(), resp.headers.get("Server", "")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(POLL)


@contextlib.contextmanager
def served(env: dict[str, str], image: str, name: str) -> Iterator[str]:
    """Run an image in this namespace (PORT=8080, published on loopback); yield its URL."""
    port = free_port()
    podman(env, "rm", "-f", name)
    podman(env, "run", "-d", "--name", name, "-e", "PORT=8080", "-p", f"127.0.0.1:{port}:8080", image)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        podman(env, "rm", "-f", name)
