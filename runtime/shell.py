"""How the runtime runs commands: `Shell` (local subprocess) — swapped only to aim at another host.

The node agent runs `podman` on its own machine with `LocalShell`. Tests of the simulated
cluster aim the same driver at a simulated machine by giving a shell that prefixes the
machine's namespace entry; nothing else in the runtime knows the difference.
"""

from __future__ import annotations

import subprocess
from typing import Protocol

# podman answers in well under a second; 120 s means it is stuck on a lock (say so, don't hang)
COMMAND_TIMEOUT_S = 120.0


class Shell(Protocol):
    def run(self, argv: list[str], timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess: ...

    def popen(self, argv: list[str]) -> subprocess.Popen: ...


class LocalShell:
    """Run commands on this machine, output captured as text."""

    def __init__(self, env: dict[str, str] | None = None):
        self.env = env

    def run(self, argv: list[str], timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env,
                              stdin=subprocess.DEVNULL)

    def popen(self, argv: list[str]) -> subprocess.Popen:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env,
                                stdin=subprocess.DEVNULL)
