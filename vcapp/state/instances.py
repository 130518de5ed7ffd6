"""Where each instance runs and how it is doing: the one reader of two families.

    /vc/assign/<app>/<instance>          the placement (written by node/placer_loop.py)
    /vc/status/<node>/<app>/<instance>   the runtime's report, bound to the writing machine's
                                         lease (written by node/runtime_loop.py)

A report's node, app and instance are those of its key: the machine writes only under its own
name, so the key says who reported, whatever the record holds. The placer's snapshot
(views/placement.py) reads the assignments' entries itself: its transaction guards on their
revisions.
"""

from __future__ import annotations

from vcapp.state import keys
from vcapp.state.store import Store


def placed_at(store: Store) -> int:
    """The revision of the newest placement written (a new or moved instance, a new release)."""
    return store.newest_change(keys.ASSIGN)


def assignments(store: Store, app: str) -> dict[str, dict]:
    """The app's placements by instance name: node, release, process and what the placer adds."""
    return {str(e.value["instance"]): e.value for e in store.list(keys.assign(app))
            if isinstance(e.value, dict) and e.value.get("instance") is not None}


def every_assignment(store: Store) -> list[dict]:
    """Every app's placements."""
    return [e.value for e in store.list(keys.ASSIGN) if isinstance(e.value, dict)]


def reports(store: Store) -> list[dict]:
    """Every runtime report (state, health, release, host port, usage), with node, app and
    instance set from its key."""
    found = []
    for e in store.list(keys.STATUS):
        parts = keys.name_of(e.key, keys.STATUS).split("/")
        if len(parts) == 3 and isinstance(e.value, dict):
            found.append(dict(e.value, node=parts[0], app=parts[1], instance=parts[2]))
    return found


def report(store: Store, node: str, app: str, instance: str) -> dict:
    """What `node` reports of the instance ({} when it reports nothing)."""
    found = store.value(keys.status(node, app, instance))
    return dict(found, node=node, app=app, instance=instance) if isinstance(found, dict) else {}


def app_reports(store: Store, app: str) -> list[dict]:
    """The reports of one app's instances, from every machine."""
    return [r for r in reports(store) if r["app"] == app]
