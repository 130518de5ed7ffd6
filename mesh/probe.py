"""Round-trip times over the overlay: one ICMP echo per peer, all peers at once."""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

PING_WAIT = 1  # seconds; a peer slower than this over the overlay counts as unanswered
TIME_RE = re.compile(r"time=([0-9.]+) ms")


def ping(ip: str) -> float | None:
    """RTT in ms of one echo to `ip`, None if it went unanswered."""
    proc = subprocess.run(["ping", "-n", "-c", "1", "-W", str(PING_WAIT), ip], capture_output=True, text=True)
    m = TIME_RE.search(proc.stdout)
    return float(m.group(1)) if proc.returncode == 0 and m else None


def ping_all(ips: list[str]) -> dict[str, float | None]:
    if not ips:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(ips))) as pool:
        return dict(zip(ips, pool.map(ping, ips)))
