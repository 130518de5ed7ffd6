"""Builds: the record of every push, and the builds machines run for each other.

GET /v1/apps/<app>/builds            {app, builds: [record, ...] oldest first} (vcapp/state/builds.py)
GET /v1/apps/<app>/builds/<n|latest> one record with its whole kept log in "log"

POST /v1/builds/<app>/<number>, machines only, body: the pushed tree as a gzip'd tar
(vcapp/deploy/remote_build.py has both halves' rules). The answer streams text lines: the build
log as it comes, an empty line while the build is quiet, and last "=> {image fields}" or
"!! why it failed".
POST /v1/builds/<app>/<number>/copies, machines only: the image built there, copied to more
machines; streamed the same way, last "=> {"copies": [...]}".
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from flask import Blueprint, jsonify, request

from builder.build import image_ref
from gitserver import DeployError
from vcapp.api import context, streamed
from vcapp.api.auth import machine_only
from vcapp.api.body import json_body, streams_body
from vcapp.deploy import pipeline, remote_build
from vcapp.errors import BadRequest, Unavailable
from vcapp.machine import NodeConfig
from vcapp.state import apps, builds, membership

bp = Blueprint("builds", __name__)
LATEST = "latest"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def this_machine() -> NodeConfig:
    """The node config of the machine asked to build or copy; Unavailable outside a cluster."""
    node = NodeConfig.load()
    if node is None:
        raise Unavailable("this machine is not in a cluster (no node.json)")
    return node


def build_number(value: str) -> int | None:
    """A build number from a path (7, "latest": None); BadRequest otherwise."""
    if value == LATEST:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 9 or int(value) < 1:
        raise BadRequest(f"build {value!r} is not a build number; give one like 7, or latest "
                         "(`vcapp builds APP` lists them)")
    return int(value)


@bp.get("/v1/apps/<app>/builds")
def list_builds(app: str):
    """APP's kept builds, oldest first: number, sha, who, where it built, when, how long,
    result (building / succeeded / failed / refused), stage and reason, the last lines of a
    failure, the release it made. No logs: GET .../builds/<n> has one."""
    store = context.store()
    name = apps.app_name(app)
    apps.get_app(store, name)
    return jsonify(app=name, builds=builds.list_builds(store, name))


@bp.get("/v1/apps/<app>/builds/<number>")
def get_build(app: str, number: str):
    """Build NUMBER of APP (or the newest: latest) with its whole kept log in "log"."""
    store = context.store()
    name = apps.app_name(app)
    which = build_number(number)
    apps.get_app(store, name)
    return jsonify(dict(builds.get_build(store, name, which), app=name))


@bp.post("/v1/builds/<app>/<number>")
@machine_only
@streams_body
def build(app: str, number: str):
    """Build NUMBER (the build number, the image tag) of APP here from the tarball in the body; the
    log streams back.

    For the cluster's machines only (the machine credential, not an admin token)."""
    if not number.isdigit():
        raise BadRequest(f"build number {number!r} is not a whole number")
    number = int(number)
    config = context.config()
    apps.get_app(config.store(), apps.app_name(app))
    node = this_machine()
    work = Path(tempfile.mkdtemp(prefix=f"vcapp-build-{app}-"))
    try:
        source = remote_build.unpack(request.get_data(), work / "src")
    except Exception:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return streamed.respond(f"build-{app}-{number}",
                            lambda log: pipeline.build_here(config.store(), node, app, number, source, log),
                            (DeployError,), node.name, cleanup=lambda: shutil.rmtree(work, ignore_errors=True))


@bp.post("/v1/builds/<app>/<number>/copies")
@machine_only
def copy_build(app: str, number: str):
    """Copy the image this machine built as build NUMBER of APP to more machines' registries
    (vcapp/deploy/pipeline.py copy_release_image); body {"digest": the manifest digest the copies must
    have, or null}. The log streams back, last "=> {"copies": [machine, ...]}".

    For the cluster's machines only (the machine credential, not an admin token)."""
    if not (number.isascii() and number.isdigit()) or len(number) > 9:
        raise BadRequest(f"build number {number!r} is not a whole number")
    digest = json_body().get("digest")
    if digest is not None and not (isinstance(digest, str) and DIGEST.fullmatch(digest)):
        raise BadRequest("digest must be a manifest digest like sha256:<64 hex digits>, or null")
    config = context.config()
    store = config.store()
    name = apps.app_name(app)
    apps.get_app(store, name)
    node = this_machine()
    image = image_ref(f"{node.addr}:{pipeline.REGISTRY_PORT}", name, int(number))
    nodes, alive = membership.node_records(store), membership.alive_machines(store)
    return streamed.respond(f"copies-{name}-{number}",
                            lambda log: {"copies": pipeline.copy_image(nodes, alive, node.name, image, log, digest)},
                            (DeployError,), node.name)
