"""Releases of an app (one per successful git push) and rolling back to one of them."""

from __future__ import annotations

import re

from flask import Blueprint, g, jsonify

from vcapp import apps, release_phase, releases
from vcapp.api import context, streamed
from vcapp.api.auth import machine_only
from vcapp.api.body import json_body
from vcapp.errors import BadRequest

bp = Blueprint("releases", __name__)
# ASCII digits only (str.isdigit also takes "²", which int() refuses), and few enough to be one.
NUMBER = re.compile(r"[0-9]{1,9}")


def release_number(value) -> int | None:
    """A release number from a request (1, "3", "v3"), or None when absent."""
    if value is None:
        return None
    text = str(value).strip().lower().removeprefix("v")
    if isinstance(value, bool) or not NUMBER.fullmatch(text) or int(text) < 1:
        raise BadRequest(f"release: {value!r} is not a release number; give one like 3 or v3 "
                         "(`vcapp releases APP` lists them)")
    return int(text)


@bp.get("/v1/apps/<app>/releases")
def list_releases(app: str):
    """Releases oldest first, each with number, sha, image, digest, time, who, config, status;
    `current` is the release the app runs now."""
    store = context.store()
    spec = apps.get_app(store, apps.app_name(app))
    return jsonify(app=app, current=spec.get("release"), releases=releases.list_releases(store, app))


@bp.post("/v1/apps/<app>/rollback")
def rollback(app: str):
    """Run an earlier release again. Body: {"release": N} (default: the last good one before the current)."""
    body = json_body(required=False)
    number = release_number(body.get("release"))
    result = releases.rollback(context.store(), apps.app_name(app), number, g.admin)
    return jsonify(result)


@bp.post("/v1/releases/<app>/<number>/phase")
@machine_only
def release_phase_here(app: str, number: str):
    """Run release NUMBER's release command here, where the app's volumes are; the log streams
    back (api/streamed.py). Body: {"image", "command", "config"}. For the cluster's machines
    only: the machine that took the push asks the one holding the volumes."""
    number_ = release_number(number)
    body = json_body()
    image, command, config = body.get("image"), body.get("command"), body.get("config") or {}
    if not isinstance(image, str) or not image or not isinstance(command, str) or not command \
            or not isinstance(config, dict):
        raise BadRequest("give the release's image, its release command and its config")
    api = context.config()
    apps.get_app(api.store(), apps.app_name(app))

    def work(log) -> dict:  # on the stream's own thread: a Store of its own
        return {"seconds": release_phase.run(api.store(), app, number_, image, command, config, log, here_only=True)}

    return streamed.respond(f"release-phase-{app}-{number_}", work, (release_phase.ReleaseFailed,), api.node)
