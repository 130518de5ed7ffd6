"""App volumes on the replicated storage.

    POST /v1/apps/<app>/volumes   {"name": "data", "size": "1G"}: create (or grow) a volume;
                                  the cluster's first volume starts the storage cluster
    GET  /v1/volumes[?app=APP]    the volumes, and the storage's replication state
    POST /v1/apps/<app>/bucket    give the app its S3 bucket and keys (as app secrets)
    GET  /v1/buckets              the apps' buckets, each with the backend it lives on
    GET    /v1/buckets/backend    where new buckets go: {"backend": "builtin"} or the external
                                  S3 service's setting without its secret key
    PUT    /v1/buckets/backend    {"endpoint", "kind": "iam"|"minio", "access_key", "secret_key",
                                  "region"?, "bucket_prefix"?, "iam_endpoint"?}: use that service
                                  (checked first: 400 bad field or refused key, 502 unreachable)
    DELETE /v1/buckets/backend    back to the built-in storage (409 while buckets exist)
"""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from vcapp.api import context
from vcapp.api.body import json_body
from vcapp.errors import Unavailable
from vcapp.machine import NodeConfig
from vcapp.state import apps, bucketbackend, volumes

bp = Blueprint("volumes", __name__)


@bp.post("/v1/apps/<app>/volumes")
def create_volume(app: str):
    """Create or grow a volume of APP (its data is kept on 3 machines)."""
    body = json_body()
    size = apps.parse_volume_size(body.get("size", volumes.DEFAULT_SIZE_MB))
    name, store = str(body.get("name") or ""), context.store()
    volumes.check_request(store, apps.app_name(app), name, size)
    record = volumes.create(store, _node_config(), app, name, size)
    return jsonify(record), 201


@bp.get("/v1/volumes")
def list_volumes():
    """Volumes (of one app with ?app=) and the storage's state: healthy, degraded, or off."""
    store = context.store()
    app = request.args.get("app")
    found = volumes.list_volumes(store, apps.app_name(app) if app else None)
    state = store.value(volumes.STATE) or {"state": "off" if not volumes.storage_enabled(store) else "starting"}
    return jsonify(volumes=found, storage=state)


def _node_config() -> NodeConfig:
    cfg = NodeConfig.load()
    if cfg is None:
        raise Unavailable("this machine has no node config; ask another machine's API")
    return cfg


@bp.post("/v1/apps/<app>/bucket")
def create_bucket(app: str):
    """Give APP an S3 bucket with its own keys; its instances restart with them in their env."""
    app, store = apps.app_name(app), context.store()
    cfg = None if bucketbackend.get(store) else _node_config()  # only the built-in storage runs here
    return jsonify(volumes.create_bucket(store, cfg, app, who=_who())), 201


@bp.get("/v1/buckets")
def list_buckets():
    """Every app's bucket."""
    return jsonify(buckets=volumes.list_buckets(context.store()))


@bp.get("/v1/buckets/backend")
def show_backend():
    """Where new buckets go: the built-in storage, or an external S3 service (no secret shown)."""
    return jsonify(bucketbackend.public(bucketbackend.get(context.store())))


@bp.put("/v1/buckets/backend")
def set_backend():
    """Put new buckets on an existing S3 service; its admin key is checked before it is stored.

    Refused (409) if it would move where buckets go while buckets exist; a new admin key for
    the same endpoint and bucket prefix is accepted at any time."""
    return jsonify(bucketbackend.set_backend(context.store(), json_body(), who=_who()))


@bp.delete("/v1/buckets/backend")
def clear_backend():
    """Put new buckets on the built-in storage again (refused while buckets exist)."""
    return jsonify(bucketbackend.clear(context.store(), who=_who()))


def _who() -> str:
    return g.get("admin") or "admin"
