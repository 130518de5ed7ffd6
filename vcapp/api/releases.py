"""Releases of an app (one per successful git push) and rolling back to one of them."""

from __future__ import annotations

import re

from flask import Blueprint, g, jsonify

from vcapp.api import context, streamed
from vcapp.api.auth import machine_only
from vcapp.api.body import json_body
from vcapp.deploy import release_phase
from vcapp.errors import BadRequest, Conflict
from vcapp.state import apps, releases

bp = Blueprint("releases", __name__)
# ASCII digits only (str.isdigit also takes "²", which int() refuses), and few enough to be one.
NUMBER = re.compile(r"[0-9]{1,9}")
MAX_COMMAND = 4096  # characters of a one-off command line


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
    """Run an earlier release's code again, as a new release. Body: {"release": N} (default: the
    newest released one before the current with other code)."""
    body = json_body(required=False)
    number = release_number(body.get("release"))
    result = apps.rollback(context.store(), apps.app_name(app), number, g.admin)
    return jsonify(result)


@bp.post("/v1/releases/<app>/<number>/phase")
@machine_only
def release_phase_here(app: str, number: str):
    """Run a command of release NUMBER here, where the app's volumes are (the release phase or
    a one-off run); its output streams back (api/streamed.py), then {code, seconds, tail}.
    Body: {"image", "command", "config", "job"}. For the cluster's machines only: the machine
    that took the push (or the `vcapp run`) asks the one holding the volumes."""
    release_number(number)
    body = json_body()
    image, command, config = body.get("image"), body.get("command"), body.get("config") or {}
    if not isinstance(image, str) or not image or not isinstance(command, str) or not command \
            or not isinstance(config, dict) or not isinstance(body.get("job"), dict):
        raise BadRequest("give the release's image, the command, its config and the job")
    job = release_phase.Job.from_json(body["job"])
    return _stream_job(app, job, image, command, config, here_only=True)


@bp.post("/v1/apps/<app>/run")
def run_once(app: str):
    """Run a one-off command in the app's current release with its env, secrets and volumes
    (`vcapp run APP -- CMD`); its output streams back, then {code, seconds, tail}. Body:
    {"command": "..."} (run by sh -c)."""
    body = json_body()
    command = body.get("command")
    if not isinstance(command, str) or not command.strip() or len(command) > MAX_COMMAND or "\0" in command:
        raise BadRequest(f"command: one shell command line of at most {MAX_COMMAND} characters, "
                         "e.g. vcapp run APP -- python manage.py migrate")
    store = context.store()
    spec = apps.get_app(store, apps.app_name(app))
    record = releases.current(store, app, spec)
    if record is None:
        raise Conflict(f"{app} has no release to run a command in yet; deploy it first "
                       f"(git push), then `vcapp run {app} -- ...`")
    job = release_phase.Job.one_off(app, record["number"])
    return _stream_job(app, job, releases.run_image(record), command, record.get("config") or {}, here_only=False)


def _stream_job(app: str, job, image: str, command: str, config: dict, here_only: bool):
    api = context.config()
    apps.get_app(api.store(), apps.app_name(app))

    def work(log) -> dict:  # on the stream's own thread: a Store of its own
        outcome = release_phase.execute(api.store(), app, job, image, command, config, log, here_only=here_only)
        return {"code": outcome.code, "seconds": round(outcome.seconds, 3), "tail": list(outcome.tail)}

    return streamed.respond(f"{job.kind}-{app}-{job.number}", work, (release_phase.ReleaseFailed,), api.node)
