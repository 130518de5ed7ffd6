"""Commands inside a running instance (`vcapp exec`, vcapp/deploy/instance_exec.py): the admin's
request on any machine, and the machine-only half the instance's own machine serves."""

from __future__ import annotations

from flask import Blueprint

from vcapp.api import context, streamed
from vcapp.api.auth import machine_only
from vcapp.api.body import json_body
from vcapp.deploy import instance_exec
from vcapp.errors import BadRequest
from vcapp.state import apps

bp = Blueprint("instance_exec", __name__)
MAX_COMMAND = 4096  # characters of a command line, as for `vcapp run`


def _command(body: dict) -> str:
    command = body.get("command")
    if not isinstance(command, str) or not command.strip() or len(command) > MAX_COMMAND or "\0" in command:
        raise BadRequest(f"command: one shell command line of at most {MAX_COMMAND} characters, "
                         "e.g. vcapp exec APP -- ps aux")
    return command


def _instance(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not apps.INSTANCE.fullmatch(value):
        raise BadRequest(f"instance: {value!r} is not an instance name; `vcapp ps APP` lists them (0, worker-1, ...)")
    return value


@bp.post("/v1/apps/<app>/exec")
def exec_in_instance(app: str):
    """Run a command inside a running instance of the app (`vcapp exec APP [-i N] -- CMD`);
    its output streams back, then {code, seconds, tail}. Body: {"command": "...", "instance":
    "0"} (run by sh -c; instance: default the first web instance)."""
    body = json_body()
    command, instance = _command(body), _instance(body.get("instance"))
    return _stream(apps.app_name(app), instance, command, here_only=False)


@bp.post("/v1/apps/<app>/instances/<instance>/exec")
@machine_only
def exec_here(app: str, instance: str):
    """The instance's own machine runs the command (another machine relays the admin's
    request here). Body: {"command": "..."}."""
    return _stream(apps.app_name(app), _instance(instance), _command(json_body()), here_only=True)


def _stream(app: str, instance: str | None, command: str, here_only: bool):
    api = context.config()
    apps.get_app(api.store(), app)

    def work(log) -> dict:  # on the stream's own thread: a Store of its own
        outcome = instance_exec.execute(api.store(), api.node, app, instance, command, log, here_only=here_only)
        return {"code": outcome.code, "seconds": round(outcome.seconds, 3), "tail": list(outcome.tail)}

    return streamed.respond(f"exec-{app}", work, (instance_exec.ExecFailed,), api.node)
