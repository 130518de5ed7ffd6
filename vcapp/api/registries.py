"""Container registry mirrors and credentials for builds (vcapp/state/registries.py).

    GET    /v1/registries         {"registries": [{host, mirror, insecure, username, password: bool, ...}]}
    PUT    /v1/registries/<host>  {"mirror": "http://mirror.lan:5000", "insecure": false,
                                   "username": "u", "password": "p"} sets them (400 for bad input)
    DELETE /v1/registries/<host>  removes them (404 when there are none)

Passwords go in, never out: the listing says only whether a registry has one.
"""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from vcapp.api import context
from vcapp.api.body import json_body
from vcapp.state import registries

bp = Blueprint("registries", __name__)


@bp.get("/v1/registries")
def list_registries():
    """Every registry with a mirror or credentials (passwords never shown)."""
    return jsonify({"registries": registries.listing(context.store())})


@bp.put("/v1/registries/<host>")
def add_registry(host: str):
    """Set a registry's mirror, plain HTTP and credentials (replaces what was set)."""
    return jsonify(registries.add(context.store(), host, json_body(), who=g.get("admin") or "admin"))


@bp.delete("/v1/registries/<host>")
def remove_registry(host: str):
    """Remove a registry's mirror and credentials."""
    return jsonify(registries.remove(context.store(), host, who=g.get("admin") or "admin"))
