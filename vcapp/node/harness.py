"""What every node loop (vcapp/node/*_loop.py) needs besides its own observe -> decide -> act.

- `Every`: a throttle for work on the daemon's tick: due at most once per period.
- `Worker`: a daemon thread calling a sync function every period, as client-go's workqueue
  calls a syncHandler. A sync reads desired and actual state and converges, so a failed one
  is run again after a back-off, not repaired in place. The worker keeps the last error, logs
  a failure once per distinct error text, and says when the sync works again.
- `Job`: one piece of background work at a time (a fetch, a load that takes seconds), on a
  thread of its own, so the daemon's tick never waits for it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Callable

log = logging.getLogger("vcapp.node")

# Caps the back-off's exponent: 2**32 periods is past any backoff_max_s.
MAX_DOUBLINGS = 32


class Every:
    """A throttle: `due()` is true at most once per `period_s`, the first time at once."""

    def __init__(self, period_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period_s = period_s
        self.clock = clock
        self.last: float | None = None  # start of the current period; None: no period yet

    def ready(self, now: float | None = None) -> bool:
        """Whether the period is over (or none began), without beginning a new one."""
        return self.age(now) >= self.period_s

    def due(self, now: float | None = None) -> bool:
        """`ready`; if so, a new period begins at `now`."""
        now = self.clock() if now is None else now
        if not self.ready(now):
            return False
        self.last = now
        return True

    def mark(self, now: float | None = None) -> None:
        """Begin a new period at `now` (for work that counts only once it succeeded)."""
        self.last = self.clock() if now is None else now

    def soon(self, now: float | None = None) -> None:
        """Make the next check due; `age` then says the period has just run out."""
        self.last = (self.clock() if now is None else now) - self.period_s

    def age(self, now: float | None = None) -> float:
        """Seconds since the current period began (infinite before the first)."""
        if self.last is None:
            return math.inf
        return (self.clock() if now is None else now) - self.last


class Worker:
    """Calls `sync()` on a daemon thread named `name`.

    Pacing: each call `period_s` after the previous one started, the first at once; with `gap`,
    `period_s` of waiting before every call instead, the first included (calls `period_s`
    apart from end to start). After a failure the wait is `retry_s` (default `period_s`),
    doubled for each further failure in a row up to `backoff_max_s` (default `retry_s`: no
    growth), counted the same way. `wake()` cuts any wait short.

    A failure whose error text differs from the last one is reported by `failed(exc)`, called
    while the exception is handled (so `log.exception` shows its traceback); the first success
    after failures is logged.
    """

    def __init__(self, name: str, sync: Callable[[], None], period_s: float, *, retry_s: float | None = None,
                 backoff_max_s: float | None = None, gap: bool = False,
                 failed: Callable[[Exception], None] | None = None, log: logging.Logger = log) -> None:
        self.name, self.sync, self.period_s, self.gap = name, sync, period_s, gap
        self.retry_s = period_s if retry_s is None else retry_s
        self.backoff_max_s = self.retry_s if backoff_max_s is None else backoff_max_s
        self.failed = failed or self._log_failure
        self.log = log
        self.last_error: str | None = None  # text of the last failure; None after a success
        self.last_ok: float | None = None  # monotonic time the last successful sync ended
        self.failures = 0  # in a row
        self.thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._seen: object = None  # wake_on_change's last answer

    def start(self) -> None:
        """Start the thread unless it runs."""
        if self.alive():
            return
        self._stopping.clear()
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """End the thread after its current sync; wait for that at most `timeout` seconds."""
        self._stopping.set()
        self._wake.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def wake(self) -> None:
        """Run the next sync now (or right after the current one)."""
        self._wake.set()

    def wake_on_change(self, read: Callable[[], object]) -> None:
        """Run the next sync now when `read()` answers differently from its last answer (the
        first answer counts as a change). A read that fails wakes nothing: the paced sync
        reads for itself."""
        try:
            seen = read()
        except Exception:
            return
        if seen != self._seen:
            self._seen = seen
            self.wake()

    def run_once(self) -> float:
        """One sync, its outcome recorded; returns the seconds to wait before the next."""
        started = time.monotonic()
        wait = self._call()
        return wait if self.gap else wait - (time.monotonic() - started)

    def _call(self) -> float:
        try:
            self.sync()
        except Exception as e:  # a sync is rerun: one failure must not end the worker
            self._record_failure(e)
            return self.backoff()
        self._record_success()
        return self.period_s

    def backoff(self) -> float:
        """The wait after the current run of `failures`."""
        doublings = min(max(self.failures - 1, 0), MAX_DOUBLINGS)
        return min(self.backoff_max_s, self.retry_s * 2 ** doublings)

    def _run(self) -> None:
        if self.gap:
            self._pause(self.period_s)
        while not self._stopping.is_set():
            self._wake.clear()  # a wake() during the sync runs the next one at once
            self._pause(self.run_once())

    def _pause(self, seconds: float) -> None:
        if not self._stopping.is_set():
            self._wake.wait(max(0.0, seconds))

    def _record_failure(self, e: Exception) -> None:
        self.failures += 1
        text = str(e) or type(e).__name__
        if text != self.last_error:
            self.failed(e)
        self.last_error = text

    def _record_success(self) -> None:
        if self.last_error is not None:
            self.log.info("%s works again (it failed: %s)", self.name, self.last_error)
        self.failures, self.last_error, self.last_ok = 0, None, time.monotonic()

    def _log_failure(self, e: Exception) -> None:
        self.log.exception("%s failed; trying again", self.name)


class Job:
    """One piece of background work at a time, on a daemon thread named `name`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.thread: threading.Thread | None = None

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, work: Callable[..., None], *args) -> bool:
        """Run `work(*args)` unless the previous work still runs; whether it started."""
        if self.running():
            return False
        self.thread = threading.Thread(target=work, args=args, name=self.name, daemon=True)
        self.thread.start()
        return True

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)
