"""The OpenAPI 3 document, generated from the routes the app actually registers.

Each operation takes its summary (first docstring line) and description (the rest) from its
view, its path parameters from the rule, and its security from whether the view is @public.
"""

from __future__ import annotations

import inspect
import re

from flask import Blueprint, Flask, current_app, jsonify

from vcapp import __version__
from vcapp.api.auth import is_public

bp = Blueprint("openapi", __name__)

RULE_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
HIDDEN_METHODS = {"HEAD", "OPTIONS"}
ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


@bp.get("/openapi.json")
def openapi():
    """This document: every route of the admin API."""
    return jsonify(document(current_app))


def document(app: Flask) -> dict:
    paths: dict[str, dict] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        path = RULE_ARG.sub(r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - HIDDEN_METHODS):
            paths.setdefault(path, {})[method.lower()] = operation(rule.endpoint, view, list(rule.arguments))
    return {
        "openapi": "3.0.3",
        "info": {"title": "vcapp admin API", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer",
                                               "description": "an admin token, vcadm_<id>_<secret>"},
                                "machineCredential": {"type": "http", "scheme": "bearer",
                                                      "description": "derived from the cluster key: "
                                                                     "machines calling each other only"}},
            "schemas": {"Error": ERROR_SCHEMA},
        },
        "security": [{"adminToken": []}],
    }


def operation(endpoint: str, view, arguments: list[str]) -> dict:
    doc = inspect.getdoc(view) or endpoint
    summary, _, description = doc.partition("\n")
    op = {
        "operationId": endpoint.replace(".", "_"),
        "summary": summary.strip(),
        "responses": {
            "default": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "200": {"description": "success (201 for creations)", "content": {"application/json": {}}},
        },
        "security": [] if is_public(view) else [{"machineCredential": []}] if getattr(view, "machine_only", False)
        else [{"adminToken": []}],
    }
    if description.strip():
        op["description"] = description.strip()
    if arguments:
        op["parameters"] = [{"name": a, "in": "path", "required": True, "schema": {"type": "string"}}
                            for a in sorted(arguments)]
    return op
