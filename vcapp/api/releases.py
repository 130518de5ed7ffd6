"""Releases of an app (one per successful git push) and rolling back to one of them."""

from __future__ import annotations

import re

from flask import Blueprint, g, jsonify

from vcapp import apps, releases
from vcapp.api import context
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
