"""What the node daemon keeps running — child processes (etcd) and its own servers (the
mesh agent, the admin API) — started again with back-off when they stop, and taken down
with the daemon. `Restarts` is the back-off all of them share."""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import time
from pathlib import Path

log = logging.getLogger("vcapp.node")

BACKOFF_START = 1.0  # s: a crash right after start is retried quickly...
BACKOFF_MAX = 30.0  # ...but a crash loop must not eat the machine
STABLE_AFTER = 60.0  # s: a child that ran this long is healthy again; back-off resets
STOP_GRACE = 5.0  # s: etcd needs a moment to fsync and leave cleanly

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Children get SIGTERM when the daemon dies, even by SIGKILL."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Restarts:
    """When to start again something that keeps stopping: at once the first time, then after
    BACKOFF_START, doubling up to BACKOFF_MAX; a run of STABLE_AFTER starts the back-off over."""

    def __init__(self) -> None:
        self.backoff = BACKOFF_START
        self.next_start = 0.0
        self.started_at = 0.0

    def may_start(self, now: float) -> bool:
        return now >= self.next_start

    def started(self, now: float) -> None:
        self.started_at = now

    def still_running(self, now: float) -> None:
        if now - self.started_at > STABLE_AFTER:
            self.backoff = BACKOFF_START

    def stopped(self, now: float) -> float:
        """It stopped (or could not start): the seconds until it may start again."""
        delay = self.backoff
        self.next_start = now + delay
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        return delay


class Child:
    def __init__(self, name: str, log_path: Path):
        self.name = name
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.argv: list[str] = []
        self.restarts = Restarts()

    def ensure(self, argv: list[str], env: dict | None = None) -> None:
        """Keep `argv` running: start it, restart it after a crash (with back-off), or
        restart it when its command line changed."""
        now = time.monotonic()
        if self.proc and self.proc.poll() is None:
            if argv == self.argv:
                self.restarts.still_running(now)
                return
            self.stop()
        elif self.proc:
            code, self.proc = self.proc.returncode, None
            log.warning("%s exited with %s; restarting in %.0fs", self.name, code, self.restarts.stopped(now))
        if not self.restarts.may_start(now):
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=env, preexec_fn=_die_with_parent)
        self.argv = argv
        self.restarts.started(now)
        log.info("started %s (pid %s)", self.name, self.proc.pid)

    def running(self) -> bool:
        return bool(self.proc and self.proc.poll() is None)

    def stop(self) -> None:
        if not self.running():
            self.proc = None
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
