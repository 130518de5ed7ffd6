"""Release records: one per successful build of an app, kept at /vc/releases/<app>/<n>.

    {"number": 3, "sha": "<git commit>", "image": "10.1.0.11:5000/apps/blog:3",
     "digest": "sha256:..." | null, "time": t, "who": "<admin token name>",
     "config": {<app-spec fields from vcapp.toml: port, health, count, policy, ...>},
     "language": "python", "build_seconds": 12.3, "built_on": "home-1",
     "status": "deploying" | "released" | "failed", "message": "...", "rolled_back_to"?: n}

A record is written only after its image is in the registry, so a failed build leaves no
trace here; a release that then fails its health check keeps its record with status
"failed" (its image can still be rolled back to on purpose). Rollback sets the app back to
an earlier record's image and config (`rollback`).

The app runs a release's image by digest (`run_image`: <registry>/apps/blog@sha256:...), so
what runs is the manifest the build pushed whatever a tag in any registry says later. "image"
keeps the tag reference for people; a record without a digest runs by that tag.
"""

from __future__ import annotations

import time
from typing import Any

from vcapp.errors import BadRequest, Conflict, NotFound
from vcapp.state import apps, events, keys
from vcapp.state.store import Store, absent, put_op


def list_releases(store: Store, app: str) -> list[dict]:
    """Every release of `app`, oldest first."""
    return [e.value for e in store.list(keys.release(app))]


def latest(store: Store, app: str) -> dict | None:
    found = store.list(keys.release(app), limit=1, descending=True)
    return found[0].value if found else None


def current(store: Store, app: str, spec: dict) -> dict | None:
    """The release record the app runs now; None when it runs none (never pushed, or made
    with --image, which has no release record)."""
    try:
        number = int(str(spec.get("release")).split(".", 1)[0])
    except ValueError:
        return None
    record = store.value(keys.release(app, number))
    return record if isinstance(record, dict) and record.get("image") else None


def next_number(store: Store, app: str) -> int:
    last = latest(store, app)
    return (last["number"] if last else 0) + 1


def find(store: Store, app: str, number: int) -> dict | None:
    """Release `number` of the app, or None."""
    return store.value(keys.release(app, number))


def get_release(store: Store, app: str, number: int) -> dict:
    rec = find(store, app, number)
    if rec is None:
        raise NotFound(f"app {app} has no release v{number}; `vcapp releases {app}` lists them")
    return rec


def record(store: Store, app: str, rec: dict[str, Any]) -> None:
    """Write a new release record; Conflict if its number was taken meanwhile."""
    key = keys.release(app, rec["number"])
    if not store.txn([absent(key)], [put_op(key, rec)]):
        raise Conflict(f"release v{rec['number']} of {app} was taken by another deploy meanwhile; push again")


def mark(store: Store, app: str, number: int, status: str, message: str = "", **fields: Any) -> dict:
    """Set a release's status (released / failed) and a message saying why."""
    rec = dict(get_release(store, app, number), status=status, message=message, **fields)
    store.put(keys.release(app, number), rec)
    return rec


def previous_good(store: Store, app: str, before: int) -> dict | None:
    """The newest release below `before` that was released (the one to fall back to)."""
    for rec in reversed(list_releases(store, app)):
        if rec["number"] < before and rec.get("status") == "released":
            return rec
    return None


def run_image(rec: dict) -> str:
    """The reference instances of release `rec` run: its repository at its digest, or its
    tag reference when the record has no digest."""
    image, digest = rec["image"], rec.get("digest")
    if not digest:
        return image
    head, _, last = image.rpartition("/")  # the tag is in the last part: a host may have a port
    name = last.split("@", 1)[0].split(":", 1)[0]
    return f"{head}/{name}@{digest}" if head else f"{name}@{digest}"


def apply(store: Store, app: str, rec: dict) -> dict:
    """Point the app at release `rec`: its operational fields, then set_release (one roll)."""
    config = rec.get("config") or {}
    ops = {k: config[k] for k in ("count", "kill_timeout", "cpus", "memory_mb", "policy") if k in config}
    if "mounts" in config:  # vcapp.toml's [[mounts]]: the volumes every instance mounts
        ops["volumes"] = config["mounts"] or []
    if ops:
        # Without a revision bump: these roll out with the new release set just below.
        apps.update_app(store, app, lambda spec: dict(spec, **ops))
    return apps.set_release(store, app, rec["number"], run_image(rec), config)


def rollback(store: Store, app: str, number: int | None, who: str) -> dict:
    """Run release `number` (default: the newest released one before the current) again."""
    spec = apps.get_app(store, app)
    current = spec.get("release")
    if number is None:
        if not isinstance(current, int):
            raise BadRequest(f"app {app} has no deployed release to roll back from; give a release number")
        target = previous_good(store, app, current)
        if target is None:
            raise BadRequest(f"app {app} has no released version before v{current}; "
                             f"`vcapp releases {app}` lists them")
    else:
        if number < 1:
            raise BadRequest("release numbers start at 1; `vcapp releases APP` lists them")
        target = get_release(store, app, number)
    new_spec = apply(store, app, target)
    events.record(store, "rollback", f"app {app} rolled back from v{current} to v{target['number']} by {who}",
                  app=app, release=target["number"], previous=current, who=who)
    return {"app": app, "release": target["number"], "previous": current, "image": target["image"],
            "runtime_release": apps.runtime_release(new_spec), "time": time.time()}
