"""What this machine has: CPUs, memory and disk, total and free, as the placer needs them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def _meminfo() -> dict[str, int]:
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, value = line.split(":", 1)
        info[name] = int(value.split()[0])  # kB
    return info


def measure(data_dir: Path) -> dict:
    mem = _meminfo()
    disk = shutil.disk_usage(data_dir if data_dir.exists() else "/")
    load1 = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    return {
        "cpus": cpus,
        "load1": round(load1, 2),
        "free_cpus": round(max(0.0, cpus - load1), 2),
        "memory_mb": mem["MemTotal"] // 1024,
        "free_memory_mb": mem.get("MemAvailable", mem["MemFree"]) // 1024,
        "disk_mb": disk.total // 2**20,
        "free_disk_mb": disk.free // 2**20,
    }
