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
import sys
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
            with socket.create_connection((host, port), timeout=check.timeout_s) as sock:
                if accepted_by_this_machine(sock):
                    return False, not_forwarded(port)
                return True, f"TCP {port} accepts connections"
        conn = http.client.HTTPConnection(host, port, timeout=check.timeout_s)
        try:
            conn.connect()
            if accepted_by_this_machine(conn.sock):
                return False, not_forwarded(port)
            conn.request("GET", check.path, headers={"User-Agent": "vcapp-health"})
            status = conn.getresponse().status
        finally:
            conn.close()
        if 200 <= status < 400:
            return True, f"HTTP {status} from {check.path}"
        return False, f"HTTP {status} from {check.path}"
    except (OSError, http.client.HTTPException) as e:
        return False, f"{check.kind.upper()} check of port {port} failed: {e or type(e).__name__}"


NOT_FORWARDED = "not forwarded to the container"


def not_forwarded(port: int) -> str:
    return (f"port {port} is held by podman on this machine but {NOT_FORWARDED}: "
            "its port-forwarding rules are missing")


def accepted_by_this_machine(sock: socket.socket, proc_net_tcp: str = "/proc/net/tcp") -> bool:
    """Whether a connection to a published port was accepted by a socket of this machine
    instead of being forwarded into the container.

    Rootful podman keeps a listening socket on every published port (conmon holds it so that
    nothing else can take the port) and never accepts on it. While netavark's forwarding rules
    are in place no connection reaches that socket; without them the kernel completes the
    handshake on it, so a plain connect "succeeds" and the request then hangs. The accepted end
    of such a connection is a socket in this network namespace whose local address is our
    peer; a forwarded connection's other end lives in the container's namespace instead.
    """
    if sock.family != socket.AF_INET:
        return False
    ours, peer = sock.getsockname()[:2], sock.getpeername()[:2]
    other_end = (_proc_addr(*peer), _proc_addr(*ours))
    with open(proc_net_tcp) as f:
        next(f)
        return any(tuple(line.split()[1:3]) == other_end for line in f)


def _proc_addr(ip: str, port: int) -> str:
    """An IPv4 address as /proc/net/tcp writes it: the address in host byte order, then the port."""
    return f"{int.from_bytes(socket.inet_aton(ip), sys.byteorder):08X}:{port:04X}"


@dataclass
class HealthRecord:
    started_at: float
    passed_once: bool = False
    last_ok: bool = False
    failures: int = 0          # consecutive failed checks
    message: str = "not checked yet"
    forwarded: bool = True     # False: the last check landed on podman's own socket (see accepted_by_this_machine)


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
        rec.forwarded = NOT_FORWARDED not in rec.message
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
