"""A process found through its pid file, trusted only if its command line is the one we expect.

A pid file outlives its process, and the kernel hands the pid to another process later; so a
pid is believed only while /proc/<pid>/cmdline contains every given mark (the program's name,
the directory it was started for).
"""

from __future__ import annotations

from pathlib import Path


def live_pid(path: Path, *marks: str) -> int | None:
    """The pid in `path` if that process runs and its command line contains every mark."""
    try:
        pid = int(path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if all(mark.encode() in cmdline for mark in marks) else None
