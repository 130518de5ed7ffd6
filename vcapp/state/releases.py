"""Release records, kept at /vc/releases/<app>/<n>: one numbering for every change that makes
an app's instances restart, as Heroku's (v1, v2, ...).

    {"number": 3, "kind": "build" | "config" | "rollback", "description": "Deploy 889e2a5",
     "sha": "<git commit>", "image": "10.1.0.11:5000/apps/blog:7", "digest": "sha256:..." | null,
     "time": t, "who": "<admin token name>",
     "config": {<app-spec fields from vcapp.toml: port, health, count, policy, ...>},
     "language": "python", "build_seconds": 12.3, "built_on": "home-1",
     "status": "deploying" | "released" | "failed", "message": "...", "parent"?: n}

A push's record ("build") is written once its image is in the registry, so a failed build
leaves no trace here (its build record has it: vcapp/state/builds.py); a release that then
fails its health check keeps its record with status "failed". Its number is taken when the
record is written (`record_next`), not when the push starts: a secret set during a build
takes the next number, the build the one after. A change of secrets or limits
("config") and a rollback are releases too: each copies the image of the release it starts
from (`parent`), so the image tag (the build number) and the release number part after the
first push.

The app runs a release's image by digest (`run_image`: <registry>/apps/blog@sha256:...), so
what runs is the manifest the build pushed whatever a tag in any registry says later. "image"
keeps the tag reference for people; a record without a digest runs by that tag.
"""

from __future__ import annotations

import time
from typing import Any

from vcapp.errors import Conflict, NotFound
from vcapp.state import keys
from vcapp.state.store import Store, absent, put_op

# Another release taking the same number at once (a push, a config change) is rare; retry.
RECORD_ATTEMPTS = 5
# Fields of a record that describe its own rollout, not what it runs: a derived release
# starts without them.
OWN_FIELDS = ("status", "message", "deploy_seconds", "rolled_back_to")


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


def record_next(store: Store, app: str, rec: dict[str, Any]) -> dict:
    """Write `rec` as the app's next release; answers it with its number."""
    for _ in range(RECORD_ATTEMPTS):
        number, guards, ops = next_ops(store, app, rec)
        if store.txn(guards, ops):
            return dict(rec, number=number)
    raise Conflict(f"other releases of {app} kept taking the next number; try again")


def next_ops(store: Store, app: str, rec: dict[str, Any]) -> tuple[int, list[dict], list[dict]]:
    """(number, guards, ops) that write `rec` as the next release inside a caller's transaction."""
    number = next_number(store, app)
    key = keys.release(app, number)
    return number, [absent(key)], [put_op(key, dict(rec, number=number))]


def derived(parent: dict, kind: str, description: str, who: str, **config: Any) -> dict:
    """A release that runs `parent`'s image: a config change (`config`: the new limits) or a
    rollback. Released at once: it builds nothing, and its instances roll like any release."""
    base = {k: v for k, v in parent.items() if k not in OWN_FIELDS}
    return dict(base, kind=kind, description=description, who=who, time=time.time(), status="released",
                message="", parent=parent["number"], config=dict(parent.get("config") or {}, **config))


def description(rec: dict) -> str:
    """What a release changed, in words (records from before `description` say it by their sha)."""
    return rec.get("description") or f"Deploy {(rec.get('sha') or '')[:7]}".rstrip()


def mark(store: Store, app: str, number: int, status: str, message: str = "", **fields: Any) -> dict:
    """Set a release's status (released / failed) and a message saying why."""
    rec = dict(get_release(store, app, number), status=status, message=message, **fields)
    store.put(keys.release(app, number), rec)
    return rec


def previous_good(store: Store, app: str, before: int) -> dict | None:
    """The newest released release below `before` that runs other code than `before` (what
    `vcapp rollback` goes back to: the deploy before, not a config change of the same image)."""
    current = find(store, app, before) or {}
    for rec in reversed(list_releases(store, app)):
        if rec["number"] < before and rec.get("status") == "released" and \
                (rec.get("digest"), rec.get("image")) != (current.get("digest"), current.get("image")):
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
