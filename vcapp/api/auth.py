"""Admin authentication: every route needs `Authorization: Bearer <admin token>` unless its
view is marked @public (health checks, and joins, which carry a join token in their body).
An edge-scoped admin token passes only views marked @for_edges (membership.SCOPES).
Views marked @machine_only take no admin token at all, only the machine credential (derived
from the cluster key, which only machines hold): what one machine asks of another."""

from __future__ import annotations

import hmac
from typing import Callable, TypeVar

from flask import Flask, current_app, g, request

from vcapp.api import context
from vcapp.errors import Unauthorized
from vcapp.machine import machine_secret
from vcapp.state import membership

View = TypeVar("View", bound=Callable)
SCHEME = "Bearer "


def public(view: View) -> View:
    """Mark a view as reachable without an admin token."""
    view.public = True
    return view


def is_public(view: Callable) -> bool:
    return bool(getattr(view, "public", False))


def machine_only(view: View) -> View:
    """Mark a view as callable by the cluster's machines only (machine_secret as the bearer)."""
    view.machine_only = True
    return view


def _require_machine() -> None:
    config = context.config()
    key = config.cluster_key() if config.cluster_key else None
    if not key or not hmac.compare_digest(bearer_token().encode(), machine_secret(key).encode()):
        raise Unauthorized("this endpoint is for the cluster's machines only")
    g.admin = "machine"


def for_edges(view: View) -> View:
    """Mark a view as open to an edge-scoped admin token too (what an edge reads and reports)."""
    view.for_edges = True
    return view


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    if not header:
        raise Unauthorized("no admin token: send `Authorization: Bearer <admin token>` "
                           "(the CLI does after `vcapp login URL`)")
    if not header.startswith(SCHEME) or not header[len(SCHEME):].strip():
        raise Unauthorized("malformed Authorization header: use `Authorization: Bearer <admin token>`")
    return header[len(SCHEME):].strip()


def require_admin() -> None:
    """before_request: authenticate unless the route is public or does not exist (then 404)."""
    if request.routing_exception is not None or request.endpoint is None:
        return
    view = current_app.view_functions[request.endpoint]
    if is_public(view):
        return
    if getattr(view, "machine_only", False):
        return _require_machine()
    allow = ("admin", "edge") if getattr(view, "for_edges", False) else ("admin",)
    g.admin = membership.authenticate_admin(context.store(), bearer_token(), allow)


def register(app: Flask) -> None:
    app.before_request(require_admin)
