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


# A machine's record is written again when what it measures moved by this much of its total
# (the placer, the warnings and the dashboard's machine graphs read it), or when it is
# REWRITE_AFTER_S old. On an idle cluster each write is a new etcd revision, which makes every
# machine's next tick read the cluster afresh (vcapp/state/store.py shared_reads): written every
# 10 s by each machine, the records were most of an idle cluster's revisions.
MOVED_FRACTION = {"load1": ("cpus", 0.1), "free_memory_mb": ("memory_mb", 0.01), "free_disk_mb": ("disk_mb", 0.005)}
REWRITE_AFTER_S = 60.0


def worth_writing(old: dict, new: dict, now: float) -> bool:
    """Does the record `new` (measured now) say something `old` does not? (pure)"""
    if now - float(old.get("updated_at") or 0) >= REWRITE_AFTER_S:
        return True
    loose = set(MOVED_FRACTION) | {"free_cpus", "updated_at"}  # free_cpus follows load1
    if any(old.get(k) != v for k, v in new.items() if k not in loose) or set(old) != set(new):
        return True
    for field, (total, fraction) in MOVED_FRACTION.items():
        try:
            if abs(float(new[field]) - float(old[field])) >= fraction * float(new[total]):
                return True
        except (KeyError, TypeError, ValueError):
            return True
    return False
