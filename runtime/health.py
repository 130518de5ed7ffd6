"""Health checks the agent does itself: an HTTP GET of a path, or a TCP connect, on the host port.

`probe` is one check. `HealthTracker` remembers, per container, the last results it saw
(in memory only: after an agent restart every instance is "starting" again until its next
check, which is the safe direction). Health states reported:
    starting   running, not passed yet, still inside its start grace
    healthy    the last check passed
    unhealthy  the last check failed after it had passed, or the grace ran out
"""

from __future__ import annotations

import http.client
import socket
import time
from dataclasses import dataclass

from runtime.spec import HealthCheck

CHECK_HOST = "127.0.0.1"  # the agent checks the port published on its own machine


def probe(check: HealthCheck, port: int | None, host: str = CHECK_HOST) -> tuple[bool, str]:
    """(passed, what happened) for one check against host:port."""
    if check.kind == "none":
        return True, "no health check"
    if port is None:
        return False, "no published port to check; give the app a port"
    try:
        if check.kind == "tcp":
            with socket.create_connection((host, port), timeout=check.timeout_s):
                return True, f"TCP {port} accepts connections"
        conn = http.client.HTTPConnection(host, port, timeout=check.timeout_s)
        try:
            conn.request("GET", check.path, headers={"User-Agent": "vcapp-health"})
            status = conn.getresponse().status
        finally:
            conn.close()
        if 200 <= status < 400:
            return True, f"HTTP {status} from {check.path}"
        return False, f"HTTP {status} from {check.path}"
    except (OSError, http.client.HTTPException) as e:
        return False, f"{check.kind.upper()} check of port {port} failed: {e or type(e).__name__}"


@dataclass
class HealthRecord:
    started_at: float
    passed_once: bool = False
    last_ok: bool = False
    failures: int = 0          # consecutive failed checks
    message: str = "not checked yet"


class HealthTracker:
    """Per-container health, keyed by container id and start time (a restart starts afresh)."""

    def __init__(self) -> None:
        self.records: dict[str, HealthRecord] = {}

    def record(self, container_id: str, started_at: float) -> HealthRecord:
        rec = self.records.get(container_id)
        if rec is None or rec.started_at != started_at:
            rec = self.records[container_id] = HealthRecord(started_at=started_at)
        return rec

    def check(self, container_id: str, started_at: float, check: HealthCheck, port: int | None) -> HealthRecord:
        rec = self.record(container_id, started_at)
        ok, rec.message = probe(check, port)
        rec.last_ok = ok
        rec.passed_once |= ok
        rec.failures = 0 if ok else rec.failures + 1
        return rec

    def forget_except(self, container_ids: set[str]) -> None:
        for cid in set(self.records) - container_ids:
            del self.records[cid]


def state(rec: HealthRecord | None, check: HealthCheck, now: float) -> str:
    if rec is None:
        return "starting"
    if rec.last_ok:
        return "healthy"
    if not rec.passed_once and now - rec.started_at < check.start_grace_s:
        return "starting"
    return "unhealthy"


def wait_healthy(check: HealthCheck, port: int | None, deadline_s: float, alive=lambda: True,
                 interval_s: float = 0.25) -> tuple[bool, str]:
    """Check until one passes, `deadline_s` passes, or `alive()` says the container died."""
    end = time.monotonic() + deadline_s
    message = "not checked"
    while True:
        ok, message = probe(check, port)
        if ok:
            return True, message
        if not alive():
            return False, f"the container exited before passing its health check ({message})"
        if time.monotonic() >= end:
            return False, f"no passing health check within {deadline_s:g}s; last: {message}"
        time.sleep(interval_s)
