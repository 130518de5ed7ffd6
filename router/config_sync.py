"""The reconcile loop of one router layer: desired Caddy config vs what Caddy runs.

`ConfigSync.apply(routes)` renders the routes table, reads Caddy's running config and loads
the new one only when they differ, so it is idempotent and safe to call after any crash or
Caddy restart (Caddy keeps config in memory only; a restarted Caddy is simply "different").
The loop that calls it (when, how often, resyncs) belongs to whoever owns the routes:
vcapp/node/router_loop.py on a machine, vcapp/edge/daemon.py at the edge.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from router.caddy import AdminClient


def _canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


class ConfigSync:
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
