"""Fixtures for the runtime on simulated machines: a machine with the tiny image, and a
running node agent on it driven through its desired-state file."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.baseimage import TINY_IMAGE, tiny_build_command, tiny_context
from tests.conftest import Sim
from vcapp.dev.cluster import DevCluster
from vcapp.dev.topology import default

ROOT = Path(__file__).resolve().parents[2]
# The agent loop runs every 0.5 s in tests; its first health check is within a second or two.
STATUS_WAIT_S = 30.0
AGENT_INTERVAL_S = 0.5


class HostShell:
    """runtime.shell.Shell that runs commands on one simulated machine."""

    def __init__(self, dc, host: str):
        self.dc, self.host = dc, host

    def run(self, argv, timeout=120.0):
        return self.dc.run(self.host, argv, timeout=timeout)

    def popen(self, argv):
        return self.dc.spawn(self.host, argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


class AgentOnHost:
    """A node agent process on a simulated machine, fed assignments through a file."""

    def __init__(self, sim, host: str, workdir: Path, interval: float = AGENT_INTERVAL_S,
                 assignments: list[dict] | None = None):
        self.sim, self.host = sim, host
        workdir.mkdir(parents=True, exist_ok=True)
        self.desired, self.status_file, self.log = workdir / "desired.json", workdir / "status.json", workdir / "agent.log"
        self.want(assignments or [])
        argv = [sys.executable, "-m", "tests.helpers.file_agent", "--desired", str(self.desired),
                "--status", str(self.status_file), "--interval", str(interval)]
        self.proc = sim.dc.spawn(host, argv, log=self.log, cwd=str(ROOT))

    def want(self, assignments: list[dict], secrets: dict | None = None) -> None:
        tmp = self.desired.with_suffix(".tmp")
        tmp.write_text(json.dumps({"assignments": assignments, "secrets": secrets or {}}))
        os.replace(tmp, self.desired)

    def status(self) -> dict:
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}

    def wait(self, key: str, pred, what: str, timeout: float = STATUS_WAIT_S) -> dict:
        """Wait until the status report of `key` satisfies `pred`; return it."""
        end = time.monotonic() + timeout
        rep: dict = {}
        while time.monotonic() < end:
            assert self.proc.poll() is None, f"agent died; see {self.log}:\n{self.log.read_text()[-2000:]}"
            rep = self.status().get("instances", {}).get(key, {})
            if rep and pred(rep):
                return rep
            time.sleep(0.1)
        raise AssertionError(f"{key} never became {what} within {timeout:.0f}s; last report: {rep}\n"
                             f"agent log: {self.log.read_text()[-2000:]}")

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.sim.run(self.host, "podman", *args, check=check)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    """A simulated cluster whose home-1 and home-2 have the tiny busybox image.

    Named r<hex>, not t<hex>: the shared session fixture removes every t<hex> cluster when
    any pytest session starts, which kills this module's machines if another engineer's
    test run starts meanwhile."""
    dc = DevCluster("r" + secrets.token_hex(2))
    try:
        dc.up(default(dc.name, home=2, office=1))
        sim = Sim(dc)
        ctx = tiny_context(tmp_path_factory.mktemp("tiny"))
        for host in ("home-1", "home-2"):
            sim.run(host, *tiny_build_command(ctx), timeout=120)
        yield sim
    finally:
        dc.down()


@pytest.fixture(scope="module")
def agent(machine, tmp_path_factory):
    a = AgentOnHost(machine, "home-1", tmp_path_factory.mktemp("agent-home-1"))
    yield a
    if a.proc.poll() is None:
        a.stop()


def web(app: str = "web", instance: str = "0", release: str = "1", page: str = "hello", memory_mb: int = 64,
        health: dict | None = None, command: list[str] | None = None, **extra) -> dict:
    """An assignment for a busybox httpd serving `page` at /index.html."""
    serve = f"mkdir -p /www && echo {page} > /www/index.html && echo serving {page} && exec httpd -f -p 8080 -h /www"
    return {"app": app, "instance": instance, "release": release, "image": TINY_IMAGE, "port": 8080,
            "memory_mb": memory_mb, "cpus": 0.5, "pids": 64, "command": command or ["sh", "-c", serve],
            "health": health or {"type": "http", "path": "/index.html", "start_grace_s": 10}, **extra}
