"""Interactive one-off commands: POST /v1/apps/<app>/console, whose body and answer are the
frames of vcapp/terminal.py, both streaming at once (`vcapp run APP` on a terminal).

The command runs in the app's current release where its volumes are (vcapp/deploy/
release_phase.py): here, or on the machine holding them, which this machine asks on
/v1/apps/<app>/console/here with the machine credential and pumps the frames to and from.
"""

from __future__ import annotations

import http.client
import json
import queue
import threading
from typing import Iterator

from flask import Blueprint, Response, request

from vcapp import terminal
from vcapp.api import context
from vcapp.api.auth import machine_only
from vcapp.api.body import streams_body
from vcapp.api.releases import MAX_COMMAND
from vcapp.deploy import console, release_phase
from vcapp.errors import BadRequest, Conflict, Unavailable
from vcapp.machine import cluster_key, machine_secret
from vcapp.state import apps, releases, reposync

bp = Blueprint("console", __name__)
CONNECT_TIMEOUT_S = 10.0  # another machine's API, on the cluster network
DEFAULT_COMMAND = "command -v bash >/dev/null && exec bash || exec sh"  # `vcapp run APP`: a shell


@bp.post("/v1/apps/<app>/console")
@streams_body
def open_console(app: str):
    """Run a command on a terminal in APP's current release; see the module docstring."""
    return _session(app, here_only=False)


@bp.post("/v1/apps/<app>/console/here")
@machine_only
@streams_body
def console_here(app: str):
    """The same for a machine that sent the session here, where the app's volumes are."""
    return _session(app, here_only=True)


def _session(app: str, here_only: bool) -> Response:
    frames = terminal.read_frames(request.environ["wsgi.input"])
    first = _first(frames)
    command = first.get("command") or DEFAULT_COMMAND
    if not isinstance(command, str) or len(command) > MAX_COMMAND or "\0" in command:
        raise BadRequest(f"command: one shell command line of at most {MAX_COMMAND} characters")
    api = context.config()
    store = api.store()
    spec = apps.get_app(store, apps.app_name(app))
    record = releases.current(store, app, spec)
    if record is None:
        raise Conflict(f"{app} has no release to run a command in yet; deploy it first (git push)")
    holder = release_phase.volume_holder(store, app, spec.get("volumes") or [])
    if holder is not None and holder != api.node and not here_only:
        address = reposync.live_apis(store).get(holder)
        if address is None:
            raise Unavailable(f"{holder} holds the app's volumes but does not answer; try again once it is back "
                              "or its instance has moved")
        return Response(_forward(address, holder, app, first, frames), mimetype=terminal.MIMETYPE)
    job = release_phase.Job.one_off(app, record["number"])
    out: queue.Queue = queue.Queue()

    def work() -> None:
        def log(line: str) -> None:  # what happens before the command: pull, volumes
            out.put(terminal.frame(terminal.OUTPUT, (line + "\r\n").encode()))

        run = console.runner(console.window(first), frames, out.put)
        try:
            outcome = release_phase.execute(api.store(), app, job, releases.run_image(record), command,
                                            record.get("config") or {}, log, here_only=here_only, terminal=run)
            out.put(terminal.json_frame(terminal.EXIT, {"code": outcome.code}))
        except release_phase.ReleaseFailed as e:
            out.put(terminal.frame(terminal.ERROR, str(e).encode()))
        except Exception as e:  # the person must hear why
            out.put(terminal.frame(terminal.ERROR, f"internal error on {api.node}: {type(e).__name__}: {e}".encode()))
        finally:
            out.put(None)

    threading.Thread(target=work, name=f"console-{app}", daemon=True).start()
    return Response(iter(out.get, None), mimetype=terminal.MIMETYPE)


def _first(frames: Iterator[tuple[bytes, bytes]]) -> dict:
    """The session's first frame: the command and the window."""
    try:
        kind, payload = next(frames)
        doc = json.loads(payload)
    except (StopIteration, ValueError, terminal.FrameError):
        raise BadRequest("a console session starts with a command frame (vcapp/terminal.py)") from None
    if kind != terminal.COMMAND or not isinstance(doc, dict):
        raise BadRequest("a console session starts with a command frame (vcapp/terminal.py)")
    return doc


def _forward(address: str, holder: str, app: str, first: dict,
             frames: Iterator[tuple[bytes, bytes]]) -> Iterator[bytes]:
    """The session, run on `holder` (its API at `address`): the person's frames there, its
    frames back."""
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=CONNECT_TIMEOUT_S)
    try:
        conn.connect()
    except OSError as e:
        yield terminal.frame(terminal.ERROR, f"{holder} holds the app's volumes but cannot be reached: {e}".encode())
        return
    terminal.open_session(conn, f"/v1/apps/{app}/console/here", machine_secret(cluster_key()))
    send_chunk(conn, terminal.json_frame(terminal.COMMAND, first))

    def pump_in() -> None:
        try:
            for kind, payload in frames:
                send_chunk(conn, terminal.frame(kind, payload))
            conn.send(b"0\r\n\r\n")
        except OSError:
            pass

    threading.Thread(target=pump_in, name=f"console-{app}-to-{holder}", daemon=True).start()
    try:
        answer = conn.getresponse()
        if answer.status != 200:
            yield terminal.frame(terminal.ERROR, f"{holder} refused ({answer.status}): {answer.read(300)!r}".encode())
            return
        while data := answer.read1(65536):
            yield data
    finally:
        conn.close()


def send_chunk(conn: http.client.HTTPConnection, data: bytes) -> None:
    conn.send(terminal.chunk(data))
