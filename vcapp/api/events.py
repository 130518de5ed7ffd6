"""The cluster's event history, and a long poll so `vcapp events --follow` sees new ones live."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify, request

from vcapp.api import context
from vcapp.api.validate import bounded_int, event_id
from vcapp.state import events as history
from vcapp.state.store import Store

bp = Blueprint("events", __name__)

MAX_WAIT = 25      # below the 30 s idle timeouts of common proxies, so a long poll is not cut
POLL_INTERVAL = 0.3  # how soon a follower sees a new event; one small etcd read each time
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


@bp.get("/v1/events")
def list_events():
    """Events oldest first: the latest ones, or those after ?after=ID.

    ?limit=N (1-1000); ?wait=S (0-25) with ?after holds the request until an event arrives or
    S seconds pass, for following the history live.
    """
    limit = bounded_int(request.args.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    wait = bounded_int(request.args.get("wait"), "wait", 0, 0, MAX_WAIT)
    after = request.args.get("after")
    store = context.store()
    if not after:
        found = history.latest(store, limit)
    else:
        found = wait_for_events(store, event_id(after), limit, wait)
    last = found[-1]["id"] if found else after
    return jsonify(events=found, last=last)


def wait_for_events(store: Store, after: str, limit: int, wait: int) -> list[dict]:
    deadline = time.monotonic() + wait
    while True:
        found = history.since(store, after, limit)
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
