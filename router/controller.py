"""The reconcile loop of one router layer: desired Caddy config vs what Caddy runs.

`Controller.apply(routes)` renders the routes table, reads Caddy's running config and loads
the new one only when they differ, so it is idempotent and safe to call after any crash or
Caddy restart (Caddy keeps config in memory only; a restarted Caddy is simply "different").
`watch` polls a routes source for control planes that have no change notifications.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

from router.caddy import AdminClient

# A watched source is read this often when it cannot notify: routes reach Caddy within
# about this long (plus a config load, tens of ms) of a change.
POLL_INTERVAL = 0.2
# Even with unchanged routes, compare with what Caddy runs this often: a Caddy that was
# restarted (and lost its in-memory config) is back in service within this long.
RESYNC_INTERVAL = 5.0


def _canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


class Controller:
    """Drives one Caddy from routes tables through `render(routes) -> dict`."""

    def __init__(self, admin: AdminClient, render: Callable[[Any], dict]):
        self.admin = admin
        self.render = render

    def apply(self, routes: Any) -> bool:
        """Converge Caddy to `routes`. True when a new config was loaded."""
        desired = self.render(routes)
        if _canonical(self.admin.config()) == _canonical(desired):
            return False
        self.admin.load(desired)
        return True

    def watch(self, source: Callable[[], Any], stop: threading.Event,
              interval: float = POLL_INTERVAL, on_error: Callable[[Exception], None] | None = None) -> None:
        """Apply source() every `interval` seconds until `stop` is set (run it in a thread)."""
        last, synced = None, 0.0
        while not stop.is_set():
            try:
                routes = source()
                if routes != last or time.monotonic() - synced > RESYNC_INTERVAL:
                    self.apply(routes)
                    last, synced = routes, time.monotonic()
            except Exception as e:  # the loop must outlive a bad table or a restarting Caddy
                last = None
                if on_error:
                    on_error(e)
            stop.wait(interval)
