"""Resource usage of a container, read from its cgroup (cgroup v1 or v2) through its PID.

Returns raw counters; the agent turns two CPU samples into a percentage of one core.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Usage:
    cpu_ns: int
    memory_bytes: int
    memory_limit_bytes: int | None


def cgroup_paths(pid: int) -> dict[str, str]:
    """controller -> cgroup path of a process ('' key for the v2 unified tree)."""
    out: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(","):
            out[c] = path
    return out


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return None if text == "max" else int(text)


def read(pid: int) -> Usage | None:
    """Usage of the cgroup `pid` lives in, or None if the process is gone."""
    if pid <= 0:
        return None
    try:
        paths = cgroup_paths(pid)
    except OSError:
        return None
    if "memory" in paths:  # v1
        mem = CGROUP_FS / "memory" / paths["memory"].lstrip("/")
        cpu = CGROUP_FS / "cpuacct" / paths.get("cpuacct", "").lstrip("/")
        limit = _read_int(mem / "memory.limit_in_bytes")
        return Usage(cpu_ns=_read_int(cpu / "cpuacct.usage") or 0,
                     memory_bytes=_read_int(mem / "memory.usage_in_bytes") or 0,
                     memory_limit_bytes=limit if limit and limit < 1 << 60 else None)
    base = CGROUP_FS / paths.get("", "/").lstrip("/")
    usec = 0
    try:
        for line in (base / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec"):
                usec = int(line.split()[1])
    except OSError:
        pass
    return Usage(cpu_ns=usec * 1000, memory_bytes=_read_int(base / "memory.current") or 0,
                 memory_limit_bytes=_read_int(base / "memory.max"))
