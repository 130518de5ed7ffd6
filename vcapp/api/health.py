"""Health check for the edge and load balancers: 200 while this API can reach etcd."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify

from vcapp.api import context
from vcapp.api.auth import public

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@public
def healthz():
    """200 {"ok": true} when etcd answers, 503 otherwise. No token needed. `time` is this
    machine's clock (unix seconds), which `vcapp doctor` compares with its own."""
    if context.store().healthy():
        return jsonify(ok=True, node=context.config().node, time=time.time())
    return jsonify(ok=False, node=context.config().node, time=time.time(),
                   error="the cluster state store (etcd) is not answering from this machine"), 503
