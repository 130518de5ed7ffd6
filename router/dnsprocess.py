"""The process of a router's DNS answers server (router/answers.py): started like its Caddy,
given new answers as a file.

    dns = DnsProcess(workdir, launcher)
    dns.start()            # "127.0.0.1:PORT", the address Caddy's config names
    dns.write(table)       # True when the answers changed
    dns.stop()
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from router.caddy import Launcher, default_launcher, stop_process

ANSWERS_FILE, PORT_FILE = "dns-answers.json", "dns-port"
START_TIMEOUT = 10.0  # a python process binds a UDP port in well under a second


class DnsProcess:
    """The answers server of one router, its files in `workdir`."""

    def __init__(self, workdir: str | Path, launcher: Launcher | None = None):
        self.workdir = Path(workdir)
        self.launcher = launcher or default_launcher
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.written: dict | None = None

    @property
    def answers_file(self) -> Path:
        return self.workdir / ANSWERS_FILE

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> str:
        """Start the server (again on the same port when it ran before); its address."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        port_file = self.workdir / PORT_FILE
        port_file.unlink(missing_ok=True)
        if not self.answers_file.exists():
            self.write({})
        argv = [sys.executable, "-m", "router.answers", str(self.answers_file.resolve()), str(port_file.resolve()),
                "--port", str(self.port)]
        self.proc = self.launcher(argv, self.workdir / "dns.log")
        deadline = time.monotonic() + START_TIMEOUT
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the router's DNS answers server did not start; see {self.workdir / 'dns.log'}")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        return self.address

    def write(self, table: dict) -> bool:
        """Replace the answers (the server reads them at its next query). True when they changed."""
        if table == self.written:
            return False
        tmp = self.answers_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(table, sort_keys=True))
        os.replace(tmp, self.answers_file)
        self.written = table
        return True

    def stop(self) -> None:
        stop_process(self.proc)
