"""The one polling wait of the tests and the benches: ask until the answer is truthy or time runs out."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(cond: Callable[[], T], timeout: float, what: str, interval: float = 0.25,
             detail: Callable[[], str] | None = None) -> T:
    """`cond()`'s first truthy answer; AssertionError naming `what` (and `detail()`, e.g. a
    log tail, when given) after `timeout` seconds without one. The last ask is after the
    deadline, so a slow `cond` still gets its answer counted."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}" +
                                 (f"\n{detail()}" if detail else ""))
        time.sleep(interval)
