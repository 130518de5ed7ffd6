"""An open-loop HTTP client on a host of a simulated cluster (bench/ingress_bench.py's `client`
mode): requests leave on a fixed schedule whatever the latency, over keep-alive connections
reopened after a failure, each failing after 5 s. Tests run it across an operation that must
lose no request (issue 16), stop it once the operation is over, and read every request's
outcome afterwards."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CLIENT = str(Path(__file__).resolve().parents[2] / "bench" / "ingress_bench.py")


@dataclass(frozen=True)
class Target:
    """Where requests go: addr:port with Host `host`; TLS trusting `ca` when given."""

    addr: str
    port: int
    host: str
    ca: str | None = None


def start(dc, on: str, target: Target, rate: float, seconds: float) -> subprocess.Popen:
    """The client on host `on`, started: its schedule begins 0.2 s after this returns."""
    spec = {"addr": target.addr, "port": target.port, "host": target.host, "ca": target.ca}
    load = dc.spawn(on, [sys.executable, CLIENT, "client", json.dumps(spec), "open", str(rate), str(seconds)],
                    stdout=subprocess.PIPE, text=True)
    assert load.stdout.readline().strip() == "ready", f"the load client on {on} did not start"
    return load


def stop(load: subprocess.Popen) -> None:
    """End the schedule now: requests in flight finish, no new one leaves (then `outcomes`)."""
    if load.poll() is None:
        load.send_signal(signal.SIGTERM)


def outcomes(load: subprocess.Popen, seconds: float) -> list[tuple[float, str]]:
    """(seconds into the schedule, "200 ..." or what went wrong) of every request, in order."""
    out, _ = load.communicate(timeout=seconds + 60)
    return [(t, r) for t, r, _ in (json.loads(line) for line in out.splitlines())]


def failures(results: list[tuple[float, str]]) -> list[tuple[float, str]]:
    return [(round(t, 2), r) for t, r in results if not r.startswith("200")]
