"""Builds another machine asked this one to run (vcapp/buildremote.py has both halves' rules).

POST /v1/builds/<app>/<number>, machines only, body: the pushed tree as a gzip'd tar. The
answer streams text lines: the build log as it comes, an empty line while the build is
quiet, and last "=> {image fields}" or "!! why it failed".
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from flask import Blueprint, request

from gitserver import DeployError
from vcapp import apps, buildremote, deploy
from vcapp.api import context, streamed
from vcapp.api.auth import machine_only
from vcapp.api.body import streams_body
from vcapp.errors import BadRequest, Unavailable
from vcapp.node.config import NodeConfig

bp = Blueprint("builds", __name__)


@bp.post("/v1/builds/<app>/<number>")
@machine_only
@streams_body
def build(app: str, number: str):
    """Build release NUMBER of APP here from the tarball in the body; the log streams back.

    For the cluster's machines only (the machine credential, not an admin token)."""
    if not number.isdigit():
        raise BadRequest(f"release number {number!r} is not a whole number")
    number = int(number)
    config = context.config()
    apps.get_app(config.store(), apps.app_name(app))
    node = NodeConfig.load()
    if node is None:
        raise Unavailable("this machine is not in a cluster (no node.json)")
    work = Path(tempfile.mkdtemp(prefix=f"vcapp-build-{app}-"))
    try:
        source = buildremote.unpack(request.get_data(), work / "src")
    except Exception:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return streamed.respond(f"build-{app}-{number}",
                            lambda log: deploy.build_here(config.store(), node, app, number, source, log),
                            (DeployError,), node.name, cleanup=lambda: shutil.rmtree(work, ignore_errors=True))
