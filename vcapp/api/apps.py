"""Apps: create, list, scale, restart, destroy, instances (`ps`) and secrets (logs:
api/logs.py). Secret values go in and never come out: the secrets routes answer names only.
"""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from vcapp.api import context
from vcapp.api.body import json_body
from vcapp.deploy import destroy as app_destroy
from vcapp.errors import BadRequest
from vcapp.state import apps, instances
from vcapp.state import secrets as app_secrets

bp = Blueprint("apps", __name__)


@bp.post("/v1/apps")
def create():
    """Create an app. Body: {name, image?, port?, command?, count?, cpus?, memory?, env?, health?,
    priority?, constraints?}. Without an image it waits for its first git push."""
    body = json_body()
    from vcapp.machine import data_dir

    spec = apps.create_app(context.store(), body.get("name"), body, repo_root=data_dir() / "git")
    return jsonify(app=spec), 201


@bp.get("/v1/apps")
def list_all():
    """Every app with its spec (secret names only) and how many instances run healthy."""
    store = context.store()
    healthy = _healthy_counts(store)
    found = [dict(a, healthy=healthy.get(a["name"], 0)) for a in apps.list_apps(store)]
    return jsonify(apps=found)


def _healthy_counts(store) -> dict[str, int]:
    counts: dict[str, int] = {}
    for report in instances.reports(store):
        if report.get("health") == "healthy":
            counts[report["app"]] = counts.get(report["app"], 0) + 1
    return counts


@bp.get("/v1/apps/<name>")
def show(name: str):
    """One app's spec and its instances."""
    store = context.store()
    return jsonify(app=apps.get_app(store, name), instances=apps.instances(store, name))


@bp.delete("/v1/apps/<name>")
def destroy(name: str):
    """Destroy an app: its instances stop on every machine; its secrets, access tokens, custom
    domains, release records, repository and release images are deleted. Its volumes and
    bucket go too, only with ?confirm=NAME (or body {"confirm": NAME}); without it 409 names
    them and changes nothing (vcapp/deploy/destroy.py)."""
    from vcapp.machine import NodeConfig, data_dir

    confirm = request.args.get("confirm")
    if confirm is None:
        confirm = json_body(required=False).get("confirm")
    if confirm is not None and not isinstance(confirm, str):
        raise BadRequest('confirm: give the app\'s name, e.g. {"confirm": "' + name + '"}')
    return jsonify(app_destroy.destroy(context.store(), NodeConfig.load(), apps.app_name(name), confirm,
                                       repo_root=data_dir() / "git"))


@bp.post("/v1/apps/<name>/scale")
def scale(name: str):
    """Body: {count?, memory?, cpus?, processes?: {"web": 2, "worker": 1}}. New limits roll the
    instances (no downtime)."""
    body = json_body()
    spec = apps.scale(context.store(), name, body.get("count"), body.get("memory"), body.get("cpus"),
                      body.get("processes"), who=g.admin)
    return jsonify(app=spec)


@bp.post("/v1/apps/<name>/restart")
def restart(name: str):
    """Roll every instance of the app: each new one is healthy before its old one stops."""
    return jsonify(app=apps.restart(context.store(), name))


@bp.get("/v1/apps/<name>/ps")
def ps(name: str):
    """Instances: node, release, state, health, restarts, host port, and why (pending reasons)."""
    return jsonify(instances=apps.instances(context.store(), name))


# ---- secrets -------------------------------------------------------------------------------

@bp.put("/v1/apps/<name>/secrets")
def set_secrets(name: str):
    """Body: {"secrets": {NAME: value}}. Answers the names only; the app's instances roll."""
    body = json_body()
    names = app_secrets.set_secrets(context.store(), apps.app_name(name), body.get("secrets"), g.admin)
    return jsonify(app=name, secrets=names)


@bp.get("/v1/apps/<name>/secrets")
def list_secrets(name: str):
    """The names of the app's secrets (values are never answered)."""
    return jsonify(app=name, secrets=app_secrets.names(context.store(), apps.app_name(name)))


@bp.delete("/v1/apps/<name>/secrets")
def unset_secrets(name: str):
    """Body: {"names": [NAME, ...]}."""
    body = json_body()
    names = body.get("names")
    if not isinstance(names, list) or not names:
        raise BadRequest('names: give the list of secret names to remove, e.g. {"names": ["DATABASE_URL"]}')
    left = app_secrets.unset_secrets(context.store(), apps.app_name(name), [str(n) for n in names], g.admin)
    return jsonify(app=name, secrets=left)
