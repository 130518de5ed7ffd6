"""Cluster settings an admin changes at any time (vcapp/state/buildproxy.py).

    GET /v1/settings         {"build.proxy": "http://user:***@proxy:3128" | null,
                              "build.no_proxy": "mirror.lan,10.0.0.0/8" | null}
    PUT /v1/settings/<name>  {"value": "http://user@proxy:3128", "password"?: "..."} sets it,
                             {"value": ""} clears it (400 for an unknown name or a bad value;
                             nothing changes)
"""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from vcapp.api import context
from vcapp.api.body import json_body
from vcapp.state import buildproxy

bp = Blueprint("settings", __name__)


@bp.get("/v1/settings")
def show_settings():
    """Every cluster setting and its value (null: not set)."""
    return jsonify(buildproxy.show(context.store()))


@bp.put("/v1/settings/<name>")
def set_setting(name: str):
    """Set a cluster setting ({"value": ...}; an empty value clears it)."""
    body = json_body()
    return jsonify(buildproxy.set_setting(context.store(), name, body.get("value"), who=g.get("admin") or "admin",
                                          password=body.get("password")))
