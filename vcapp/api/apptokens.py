"""End-user access to apps: access tokens, the access policy, custom domains, and the
routes table edges poll.

    POST   /v1/apps/<app>/tokens          {"name": "alice-phone", "expires": "30d" | 0}
    GET    /v1/apps/<app>/tokens          ids, names, expiry, revoked (never secrets)
    DELETE /v1/apps/<app>/tokens/<id>     revoke
    PUT    /v1/apps/<app>/access          {"policy": "public" | "token"}
    GET    /v1/apps/<app>/domains
    POST   /v1/apps/<app>/domains         {"host": "www.example.org"}
    DELETE /v1/apps/<app>/domains/<host>
    GET    /v1/ingress                    for edges: domain, apps, custom domains, node routers
    PUT    /v1/ingress/certificates       for edges: {"certificates": {host: status}}
    GET    /v1/domains                    every name the edge serves, with its certificate
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from router.routes import EdgeRoutes, api_host, app_host
from vcapp.api import context
from vcapp.api.auth import for_edges
from vcapp.api.body import json_body
from vcapp.api.validate import parse_duration, token_name
from vcapp.state import access, apps, apptokens, certificates, membership
from vcapp.views import ingress

bp = Blueprint("apptokens", __name__)


@bp.post("/v1/apps/<app>/tokens")
def create_token(app: str):
    """Create an access token for APP; the answer holds the token, shown this once."""
    body = json_body()
    ttl = parse_duration(body.get("expires", 0))
    token, record = apptokens.create(context.store(), apps.app_name(app), token_name(body.get("name"), True), ttl)
    return jsonify(record | {"token": token}), 201


@bp.get("/v1/apps/<app>/tokens")
def list_tokens(app: str):
    """List APP's access tokens (never the secrets)."""
    store = context.store()
    apptokens.require_app(store, apps.app_name(app))
    return jsonify(tokens=apptokens.list_tokens(store, app))


@bp.delete("/v1/apps/<app>/tokens/<token>")
def revoke_token(app: str, token: str):
    """Revoke one of APP's access tokens by id; node routers refuse it within seconds."""
    return jsonify(apptokens.revoke(context.store(), apps.app_name(app), token))


@bp.put("/v1/apps/<app>/access")
def set_access(app: str):
    """Set APP's access policy: public, or token (visitors need an access token)."""
    spec = access.set_policy(context.store(), apps.app_name(app), json_body().get("policy"))
    return jsonify(app=app, policy=spec["policy"])


@bp.get("/v1/apps/<app>/domains")
def list_domains(app: str):
    """APP's custom domains."""
    spec = apps.get_app(context.store(), app)
    return jsonify(app=app, domains=spec.get("domains") or [], policy=spec.get("policy") or "public")


@bp.post("/v1/apps/<app>/domains")
def add_domain(app: str):
    """Serve APP at a custom host name too. Body: {"host": "www.example.org"}."""
    spec = access.add_domain(context.store(), apps.app_name(app), json_body().get("host"))
    return jsonify(app=app, domains=spec["domains"]), 201


@bp.delete("/v1/apps/<app>/domains/<host>")
def remove_domain(app: str, host: str):
    """Stop serving APP at a custom host name."""
    spec = access.remove_domain(context.store(), apps.app_name(app), host)
    return jsonify(app=app, domains=spec["domains"])


@bp.get("/v1/ingress")
@for_edges
def edge_table():
    """What an edge serves: app hostnames, custom domains, and every machine's node router;
    `placed`: each app's routers, those of the live machines running it (the edge's answers
    for its hostnames, router/edge_dns.py: a deploy or a move changes them, never the edge's
    config); and the mesh IPs of removed machines, whose mesh credentials its coordination
    server refuses (mesh_revoked).

    Every machine, not only the live ones: the edge's health checks and retries step around a
    dead one, while a routes change would make each edge reload as a machine dies — the
    moment when requests in flight matter most. `down` names the routers of the machines the
    cluster sees dead or unreachable: the edge cuts its connections to them (router/cutoff.py).

    The table is a function of the cluster's state alone: it is computed once per etcd
    revision (every read at the revision of the first, in one view), and each edge's poll (one a
    second) while nothing was written costs one read of etcd, not the view's ten linearizable
    ones."""
    store = context.store()
    with store.shared_reads():
        revision = store.revision()  # the view's first read: the others are at its revision
        cached = current_app.extensions.get(EDGE_TABLE, (0, {}))  # (revision, the table at it)
        if cached[0] != revision:
            cached = (revision, _compute_edge_table(store))
            current_app.extensions[EDGE_TABLE] = cached  # for every thread of this API (one cluster)
    return jsonify(cached[1])


EDGE_TABLE = "vcapp.edge_table"


def _compute_edge_table(store) -> dict:
    view = ingress.read_view(store)
    records = membership.node_records(store)
    routers = sorted(f"{r['addr']}:{ingress.NODE_ROUTER_PORT}" for r in records.values() if r.get("addr"))
    down = sorted(f"{r['addr']}:{ingress.NODE_ROUTER_PORT}" for name, r in records.items()
                  if r.get("addr") and name not in view.nodes)
    table = ingress.edge_routes(view, routers, down)
    return dict(domain=table.domain, apps=list(table.apps), nodes=list(table.nodes), down=list(table.down),
                domains={app: list(hosts) for app, hosts in table.domains},
                placed={app: list(routers) for app, routers in table.placed},
                mesh_revoked=membership.revoked_mesh_ips(store))


@bp.put("/v1/ingress/certificates")
@for_edges
def edge_certificates():
    """An edge's report of each served name's certificate (vcapp/edge/certificates.py)."""
    store = context.store()
    served = set(_served(store).hostnames())
    return jsonify(kept=len(certificates.record(store, json_body(), served)))


def _served(store) -> EdgeRoutes:
    """What the edge serves now (its table without the routers)."""
    return ingress.edge_routes(ingress.read_view(store), [])


NOT_REPORTED = {"state": "unknown", "reason": "the edge has not reported this name yet (is `vcapp edge run` up?)",
                "not_after": None, "since": None}


@bp.get("/v1/domains")
def all_domains():
    """Every name the cluster serves at its edge (the API, each app, the custom domains),
    with its certificate as the edge last reported it."""
    store = context.store()
    table = _served(store)
    certs, at = certificates.read(store)
    rows = [{"host": api_host(table.domain), "app": None, "kind": "api"}]
    rows += [{"host": app_host(app, table.domain), "app": app, "kind": "app"} for app in table.apps]
    rows += [{"host": host, "app": app, "kind": "custom"} for app, hosts in table.domains for host in hosts]
    return jsonify(domains=[row | (certs.get(row["host"]) or NOT_REPORTED) for row in rows], reported_at=at)
