"""Join tokens (machines join with them) and admin tokens (people administer with them).

A token's secret appears once, in the answer to its creation; listings show ids, names,
expiry and use counts, never secrets or hashes.
"""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from vcapp.api import context
from vcapp.api.body import json_body
from vcapp.api.validate import parse_duration, parse_uses, token_id, token_name
from vcapp.errors import Conflict
from vcapp.state import membership

bp = Blueprint("tokens", __name__)


def join_command(token: str) -> str:
    return f"vcapp node join {token}"


@bp.post("/v1/tokens/join")
def create_join():
    """Create a join token. Body: {"name": "", "expires": 3600 | "1h" | "never",
    "uses": 1 (how many machines it admits; 0 = any number until it expires)}."""
    body = json_body(required=False)
    ttl = parse_duration(body.get("expires", membership.DEFAULT_JOIN_TTL))
    uses = parse_uses(body.get("uses", membership.DEFAULT_JOIN_USES))
    name = token_name(body.get("name"), required=False)
    token = membership.create_join_token(context.store(), name=name, ttl=ttl, max_uses=uses)
    record = _find(membership.list_join_tokens(context.store()), token.id)
    return jsonify(record | {"token": str(token), "join_command": join_command(str(token))}), 201


@bp.get("/v1/tokens/join")
def list_join():
    """List join tokens: id, name, expiry, uses, revoked (never the secret)."""
    return jsonify(tokens=membership.list_join_tokens(context.store()))


@bp.delete("/v1/tokens/join/<token>")
def revoke_join(token: str):
    """Revoke a join token by id; machines already joined stay."""
    membership.revoke_join_token(context.store(), token_id(token))
    return jsonify(revoked=token)


@bp.post("/v1/tokens/admin")
def create_admin():
    """Create an admin token. Body: {"name": "who or what holds it", "scope": "admin" | "edge"}
    (edge: may only read the routes table an edge serves)."""
    body = json_body()
    name = token_name(body.get("name"), required=True)
    token = membership.create_admin_token(context.store(), name, str(body.get("scope") or "admin"))
    record = _find(membership.list_admin_tokens(context.store()), token.id)
    return jsonify(record | {"token": str(token)}), 201


@bp.get("/v1/tokens/admin")
def list_admin():
    """List admin tokens: id, name, created, revoked (never the secret)."""
    return jsonify(tokens=membership.list_admin_tokens(context.store()), you=g.get("admin"))


@bp.delete("/v1/tokens/admin/<token>")
def revoke_admin(token: str):
    """Revoke an admin token by id. The last valid admin token cannot be revoked."""
    store = context.store()
    token_id(token)
    active = [t["id"] for t in membership.list_admin_tokens(store) if not t.get("revoked")]
    if active == [token]:
        raise Conflict(f"admin token {token} is the last valid one; create another "
                       "(`vcapp tokens admin create --name N`) before revoking it")
    membership.revoke_admin_token(store, token)
    return jsonify(revoked=token)


def _find(records: list[dict], wanted: str) -> dict:
    return next((r for r in records if r["id"] == wanted), {"id": wanted})
