"""Builds on another machine: the push's receiver sends the source where the build should run
and relays the log, so the pusher sees one stream whichever machine builds.

    receiver (vcapp/deploy/pipeline.py)                 builder (POST /v1/builds/<app>/<n>, api/builds.py)
      choose: placer.build_machine
      tar.gz of the pushed tree  ───────────>  unpack (files, dirs, links that stay inside)
      log(line) for each line    <───────────  deploy.build_here: buildah, its registry
      the release's image fields <───────────  last line "=> {json}", or "!! why it failed"
      once the release serves:
      copy_there                 ───────────>  POST /v1/builds/<app>/<n>/copies: deploy.copy_image
      the machines with a copy   <───────────  "=> {"copies": [...]}"

Machines call each other with the machine credential (api/auth.py machine_only). If the
chosen machine stops answering, the build runs on the receiver instead, and the log says so.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

import requests

from builder.build import Limits
from gitserver import DeployError
from placer.plan import build_machine
from vcapp.errors import BadRequest
from vcapp.machine import NodeConfig, cluster_key, machine_secret
from vcapp.state import apps, reposync
from vcapp.state.store import Store
from vcapp.views.placement import Snapshot

RESULT, FAILURE = "=> ", "!! "
ESCAPE = "\\"
CONNECT_TIMEOUT = 5.0
# The builder sends an empty line at least this often while a build is quiet; a connection
# silent for IDLE_TIMEOUT means the builder is gone.
KEEPALIVE_S = 15.0
IDLE_TIMEOUT = 4 * KEEPALIVE_S

Log = Callable[[str], None]


def choose(store: Store, receiver: str) -> tuple[str, str]:
    """Where this push's build runs (placer.build_machine over the current cluster state)."""
    limits = Limits()
    return build_machine(Snapshot(store).state(time.time()), limits.cpus, apps.parse_memory(limits.memory), receiver)


def build_somewhere(store: Store, node: NodeConfig, app: str, number: int, source: Path, log: Log,
                    build_here: Callable[[], dict], on_machine: Callable[[str], None] = lambda name: None) -> dict:
    """Build number `number` of `app` where it should run; the release's image fields.
    `build_here()` builds on this machine (the receiver's own pipeline, vcapp/deploy/pipeline.py);
    `on_machine(name)` hears which machine builds (again when the build moves)."""
    where, why = choose(store, node.name)
    api = reposync.live_apis(store).get(where)
    if where == node.name or api is None:
        on_machine(node.name)
        log(f"-----> building on {node.name} ({'where the push arrived' if where != node.name else why})")
        return build_here()
    on_machine(where)
    log(f"-----> building on {where} ({why})")
    try:
        return send(api, app, number, source, log, machine_secret(cluster_key()))
    except requests.RequestException as e:
        on_machine(node.name)
        log(f"-----> {where} stopped answering ({type(e).__name__}); building here on {node.name} instead")
        return build_here()


def send(api: str, app: str, number: int, source: Path, log: Log, secret: str) -> dict:
    """POST the source to another machine's builder and relay its log; its result fields."""
    return call(f"http://{api}/v1/builds/{app}/{number}", pack(source), "application/gzip", secret, log,
                "the builder at " + api, DeployError)


def copy_there(api: str, app: str, number: int, digest: str | None, log: Log, secret: str) -> list[str]:
    """Ask the machine that built `number` (its API at `api`) to copy its image to more
    machines' registries; relays its log, returns the names that got a copy."""
    body = json.dumps({"digest": digest}).encode()
    return call(f"http://{api}/v1/builds/{app}/{number}/copies", body, "application/json", secret, log,
                "the builder at " + api, DeployError)["copies"]


def escape(line: str) -> str:
    """A log line as a stream carries it: never mistaken for the result or the failure."""
    return ESCAPE + line if not line or line.startswith((RESULT, FAILURE, ESCAPE)) else line


def unescape(line: str) -> str:
    return line[len(ESCAPE):] if line.startswith(ESCAPE) else line


def call(url: str, body: bytes, content_type: str, secret: str, log: Log, who: str,
         failure: type[Exception]) -> dict:
    """POST `body` to a machine's streaming endpoint (api/streamed.py), relay its log lines to
    `log`, and return its result fields; `failure(why)` when it answers that the work failed,
    requests' errors when it stops answering."""
    resp = requests.post(url, data=body, stream=True, timeout=(CONNECT_TIMEOUT, IDLE_TIMEOUT),
                         headers={"Authorization": f"Bearer {secret}", "Content-Type": content_type})
    with resp:
        if resp.status_code != 200:
            raise failure(f"{who} refused ({resp.status_code}): {resp.text[:300]}")
        result = read_result(resp.iter_lines(decode_unicode=True), log, failure)
    if result is None:
        raise requests.ConnectionError(f"the stream from {who} ended without a result")
    return result


def read_result(lines: Iterable[str], log: Log, failure: type[Exception]) -> dict | None:
    """Read a stream's lines up to its result line and return the result's fields (the log
    lines go to `log`; `failure(why)` for a failure line); None when the lines end first.
    Reads no line past the result: what follows it (a file) is the caller's."""
    for line in lines:
        line = line.rstrip("\n")
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
        if line.startswith(FAILURE):
            raise failure(line[len(FAILURE):])
        if line:
            log(unescape(line))
    return None


def pack(source: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(str(source), arcname=".")
    return buf.getvalue()


def unpack(data: bytes, dest: Path) -> Path:
    """Extract a source tarball into dest: regular files, directories and symlinks that stay
    inside only (BadRequest otherwise, before anything is written)."""
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")
    except (tarfile.TarError, OSError) as e:
        raise BadRequest(f"the source is not a gzip'd tar: {e}") from None
    with tar:
        members = tar.getmembers()
        for m in members:
            path = PurePosixPath(m.name)
            if path.is_absolute() or ".." in path.parts:
                raise BadRequest(f"source path {m.name!r} leaves the source directory")
            if m.issym():
                target = os.path.normpath(os.path.join(os.path.dirname(m.name), m.linkname))
                if os.path.isabs(m.linkname) or target == ".." or target.startswith("../"):
                    raise BadRequest(f"source link {m.name!r} points outside the source directory")
            elif not (m.isfile() or m.isdir()):
                raise BadRequest(f"source entry {m.name!r} is neither a file, a directory nor a link")
        dest.mkdir(parents=True, exist_ok=True)
        tar.extractall(dest, members=members)
    return dest
