"""Caddy JSON for a node router: the per-machine router that sends each request to an
instance of its app, checking end-user tokens for apps whose policy is `token`.

Pure: NodeRoutes + NodeSettings -> dict. Plain HTTP on the machine's cluster address (the
mesh encrypts it); the edges are trusted proxies, so apps see the real client address and
scheme in X-Forwarded-*. A `token` app's requests first go to the local auth service
(Caddy's forward_auth pattern): a 2xx lets the request through with X-Vcapp-Token-Id set;
anything else (401 page, 302 setting the session cookie) goes back to the client as is.

The app never sees the visitor's vcapp credential: the router drops the session cookie from
every request, and the Authorization header when it carried the vcapp token (the auth
service says so in X-Vcapp-Token-Via); the app gets the token's id and name instead
(X-Vcapp-Token-Id, X-Vcapp-Token-Name), which a client can never set itself.

An app's instances on this machine get most of its requests (LOCAL_WEIGHT), and the edges
bring an app's requests to the routers of the machines running it (router/edge_dns.py), so a
request normally crosses the mesh once: edge -> the router of a machine running the app -> its
container.
Instances elsewhere are reached through their machine's router, on its hop server
(`hop_listen`): it answers only the cluster's machines (remote_ip), serves each app's
instances on its own machine only (no second hop, no loop), and takes the requests as the
sending router passed them, past the access check and with the credential already gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from router.caddyjson import (CHECK_HEADER, LOCAL_WEIGHT, NODE_HEALTH_HOST, NODE_HEALTH_PATH, SHUTDOWN_GRACE,
                              base_document, host_route, html_page, reverse_proxy)
from router.auth import TOKEN_PARAM
from router.routes import AppRoute, NodeRoutes, api_host, app_host

SERVER = "node"
HOP_SERVER = "hop"
AUTH_CHECK_PATH = "/check"
TOKEN_ID_HEADER = "X-Vcapp-Token-Id"
TOKEN_NAME_HEADER = "X-Vcapp-Token-Name"
# The auth service's answer says where the token came from: "bearer" (Authorization header),
# "cookie" (the session cookie). A bearer token is removed before the app sees the request.
TOKEN_VIA_HEADER = "X-Vcapp-Token-Via"
# Drops the session cookie (and its separator) from a Cookie header, keeping the app's own.
SESSION_COOKIE_RE = "__Host-vcapp-session=[^;]*(;[ ]*)?"
ACCESS_LOGGER = "http.log.access"
# The access log rolls at this size, keeping this many old files: bounded on every machine.
ACCESS_LOG_ROLL_MB = 10
ACCESS_LOG_KEEP = 2


@dataclass(frozen=True)
class NodeSettings:
    """How this node router runs. listen: "addr:port" (the machine's mesh address in
    production). auth: where the auth service listens ("unix//path" or "127.0.0.1:port")."""

    admin_socket: str
    storage_dir: str
    listen: str
    auth: str
    hop_listen: str | None = None
    access_log: str | None = None  # the file of its access lines (router/accesslog.py); None: none kept


def _forward_auth(app: str, auth: str) -> dict:
    """What Caddy's `forward_auth` directive expands to, for one app."""
    copy_id = {
        "handler": "headers",
        "request": {"set": {h: [f"{{http.reverse_proxy.header.{h}}}"] for h in (TOKEN_ID_HEADER, TOKEN_NAME_HEADER)}},
    }
    drop_bearer = {"handler": "headers", "request": {"delete": ["Authorization"]}}
    return {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": auth}],
        "rewrite": {"method": "GET", "uri": f"{AUTH_CHECK_PATH}?app={quote(app)}"},
        "headers": {"request": {"set": {
            "X-Forwarded-Method": ["{http.request.method}"],
            "X-Forwarded-Uri": ["{http.request.uri}"],
        }}},
        "handle_response": [
            {"match": {"status_code": [2], "headers": {TOKEN_VIA_HEADER: ["bearer"]}},
             "routes": [{"handle": [copy_id, drop_bearer]}]},
            {"match": {"status_code": [2]}, "routes": [{"handle": [copy_id]}]},
        ],
    }


def _strip_identity() -> dict:
    """A client must not be able to claim a token id or name: drop any it sent."""
    return {"handler": "headers", "request": {"delete": [TOKEN_ID_HEADER, TOKEN_NAME_HEADER]}}


def _strip_session() -> dict:
    """The app never sees the session cookie (after the access check has read it)."""
    return {"handler": "headers",
            "request": {"replace": {"Cookie": [{"search_regexp": SESSION_COOKIE_RE, "replace": ""}]}}}


# Why an app does not answer (router/routes.py DOWN_REASONS): the page's title and first
# sentence; the route's down_detail follows.
DOWN_PAGES = {
    "undeployed": ("{name} is not deployed yet", "Nothing has been deployed to this app yet."),
    "deploying": ("{name} is being deployed", "Its first push is being built and started; try again in a minute."),
    "build-failed": ("{name} is not running", "Its last build failed, and it has never been deployed."),
    "stopped": ("{name} is stopped", "It is scaled to no instances."),
    "no-room": ("{name} is not running", "No machine has room to run it."),
    "crashed": ("{name} is not running", "Its instances crashed."),
    "unhealthy": ("{name} is not answering", "Its instances are failing their health check."),
}
UNKNOWN_DOWN = ("{name} is not running", "This app has no running instance right now. If it was just deployed "
                                         "or its machine went down, it should be back within a minute.")


def _not_running(name: str, app: AppRoute) -> dict:
    title, text = DOWN_PAGES.get(app.down or "", UNKNOWN_DOWN)
    return html_page(503, title.format(name=name), " ".join(filter(None, (text, app.down_detail))))


def _app_handlers(name: str, host: str, app: AppRoute, settings: NodeSettings) -> list[dict]:
    handlers = [_strip_identity()]
    if app.policy == "token":
        handlers.append(_forward_auth(name, settings.auth))
    handlers.append(_strip_session())
    if app.backends:
        handlers.append(_log_upstream())
        handlers.append(reverse_proxy(app.backends, app.health_path, health_host=host,
                                      weights=_local_first(app), to_apps=True))
    else:
        handlers.append(_not_running(name, app))
    return handlers


def _log_upstream() -> dict:
    """The access line names where the request went (an instance here, or another router)."""
    return {"handler": "log_append", "key": "upstream", "value": "{http.reverse_proxy.upstream.hostport}"}


def _local_first(app: AppRoute) -> list[int] | None:
    """Weights that keep requests on this machine's instances while they answer (None: no
    instance here, or only here: plain round robin)."""
    if not app.local or len(app.local) == len(app.backends):
        return None
    return [LOCAL_WEIGHT if b in app.local else 1 for b in app.backends]


def _health_routes() -> list[dict]:
    """The edges' check that this router is up; anything else on the health host is 404."""
    def answer(paths: list[str] | None, status: int, body: str) -> dict:
        match: dict = {"host": [NODE_HEALTH_HOST]}
        if paths is not None:
            match["path"] = paths
        return {"match": [match], "handle": [{"handler": "vars", "log_skip": True},  # each second, per edge
                                             {"handler": "static_response", "status_code": status, "body": body}],
                "terminal": True}

    return [answer([NODE_HEALTH_PATH], 200, "ok\n"), answer(None, 404, "not found\n")]


def _routes(routes: NodeRoutes, settings: NodeSettings) -> list[dict]:
    out = _health_routes()
    for name, app in routes.apps:
        hosts = [app_host(name, routes.domain), *app.domains]
        out.append(host_route(hosts, _app_handlers(name, hosts[0], app, settings)))
    if routes.api:
        out.append(host_route([api_host(routes.domain)], [reverse_proxy(routes.api, None, streaming=True)]))
    out.append({"handle": [html_page(404, "No app here",
                                     "Nothing is deployed at this address. Check the spelling of the link.")],
                "terminal": True})
    return out


def _hop_routes(routes: NodeRoutes) -> list[dict]:
    """The hop server's routes: machines only; each app's instances on this machine only, its
    retiring ones included (other routers may still send to them)."""
    refuse: dict = {"handle": [html_page(403, "Not for you", "This port serves the cluster's machines only.")],
                    "terminal": True}
    if routes.machines:
        refuse["match"] = [{"not": [{"remote_ip": {"ranges": list(routes.machines)}}]}]
    # peers' health checks of this machine's instances, each second: not access lines
    out = [refuse, {"match": [{"header": {CHECK_HEADER: ["1"]}}], "handle": [{"handler": "vars", "log_skip": True}]}]
    for name, app in routes.apps:
        hosts = [app_host(name, routes.domain), *app.domains]
        here = app.local + tuple(b for b in app.retiring if b not in app.local)
        handlers = ([_log_upstream(), reverse_proxy(here, app.health_path, to_apps=True)] if here
                    else [_not_running(name, app)])
        out.append(host_route(hosts, handlers))
    out.append({"handle": [html_page(404, "No app here", "Nothing is deployed at this address.")],
                "terminal": True})
    return out


def render(routes: NodeRoutes, settings: NodeSettings) -> dict:
    """The whole Caddy config document of a node router."""
    server: dict = {
        "listen": [settings.listen],
        "routes": _routes(routes, settings),
        "automatic_https": {"disable": True},
        "protocols": ["h1", "h2c"],
        "enable_full_duplex": True,  # the admin API's terminal sessions (vcapp/terminal.py), as at the edge
    }
    if routes.trusted_proxies:
        server["trusted_proxies"] = {"source": "static", "ranges": list(routes.trusted_proxies)}
    doc = base_document(settings.admin_socket, settings.storage_dir)
    # per-host request counts for the dashboard's request rate (router/requestcount.py)
    servers = {SERVER: server}
    if settings.hop_listen:
        servers[HOP_SERVER] = {"listen": [settings.hop_listen], "routes": _hop_routes(routes),
                               "automatic_https": {"disable": True}, "protocols": ["h1", "h2c"]}
        if routes.machines:
            servers[HOP_SERVER]["trusted_proxies"] = {"source": "static", "ranges": list(routes.machines)}
    doc["apps"] = {"http": {"grace_period": SHUTDOWN_GRACE, "metrics": {"per_host": True},
                            "servers": servers}}
    if settings.access_log:
        for name, srv in servers.items():
            srv["logs"] = {"default_logger_name": name}  # its lines' logger: http.log.access.<server>
        doc["logging"] = access_logging(settings.access_log)
    return doc


def access_logging(path: str) -> dict:
    """Access lines to their own bounded file, as JSON without headers (cookies, Authorization)
    and without the access-token query parameter; everything else as before, to stderr."""
    fields = {"request>headers": {"filter": "delete"}, "resp_headers": {"filter": "delete"},
              "request>tls": {"filter": "delete"},
              "request>uri": {"filter": "query", "actions": [{"type": "delete", "parameter": TOKEN_PARAM}]}}
    return {"logs": {
        "default": {"exclude": [ACCESS_LOGGER]},
        "access": {"writer": {"output": "file", "filename": path, "roll_size_mb": ACCESS_LOG_ROLL_MB,
                              "roll_keep": ACCESS_LOG_KEEP},
                   "encoder": {"format": "filter", "wrap": {"format": "json"}, "fields": fields},
                   "include": [ACCESS_LOGGER]},
    }}
