"""The cluster's history: deploys, failovers, machines up and down, joins, token changes.

Events are keys /vc/events/<ms since epoch, 13 digits>-<4 hex> so that key order is time order.
Old events are pruned beyond MAX_EVENTS (metrics history with downsampling is another job).
"""

from __future__ import annotations

import secrets
import time

from vcapp.state import keys
from vcapp.state.store import Store

MAX_EVENTS = 10_000


def record(store: Store, kind: str, message: str, **fields) -> str:
    now = time.time()
    key = f"{keys.EVENTS}{int(now * 1000):013d}-{secrets.token_hex(2)}"
    store.put(key, {"time": now, "kind": kind, "message": message, **fields})
    return key


def since(store: Store, after: str = "", limit: int = 200) -> list[dict]:
    """Events after the key `after` (exclusive), oldest first, at most `limit`."""
    start = keys.EVENTS + after + "\x00" if after else ""
    entries = store.list(keys.EVENTS, limit=limit, start=start)
    return [dict(e.value, id=e.key[len(keys.EVENTS):]) for e in entries]


def latest(store: Store, limit: int = 50) -> list[dict]:
    entries = store.list(keys.EVENTS, limit=limit, descending=True)
    return [dict(e.value, id=e.key[len(keys.EVENTS):]) for e in reversed(entries)]


def prune(store: Store, keep: int = MAX_EVENTS) -> int:
    total = store.count(keys.EVENTS)
    if total <= keep:
        return 0
    oldest = store.list(keys.EVENTS, limit=total - keep)
    for entry in oldest:
        store.delete(entry.key)
    return len(oldest)
