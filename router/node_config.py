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

The config names no instance: each app's proxy asks the router's DNS answers where to send
(router/node_dns.py), and an app with nowhere to send gets its "not running" page, read from
a file the router writes (`pages`, one per app and server, present only while the app has no
instance there). So a deploy, a scale, a failover or a health change reloads no router; only
a new app, a policy, a custom domain, the API's or the machines' addresses do.
The node server sends an app's requests to its instances on this machine while any serves,
and the edges bring an app's requests to the routers of the machines running it
(router/edge_dns.py), so a request normally crosses the mesh once: edge -> the router of a
machine running the app -> its container.
Instances elsewhere are reached through their machine's router, on its hop server
(`hop_listen`): it answers only the cluster's machines (remote_ip), serves each app's
instances on its own machine only (no second hop, no loop), and takes the requests as the
sending router passed them, past the access check and with the credential already gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from router import answers, node_dns
from router.caddyjson import (NODE_HEALTH_HOST, NODE_HEALTH_PATH, SHUTDOWN_GRACE, base_document, host_route,
                              html_page, html_response, reverse_proxy)
from router.auth import TOKEN_PARAM
from router.routes import AppRoute, NodeRoutes, api_host, app_host

SERVER = node_dns.NODE
HOP_SERVER = node_dns.HOP
AUTH_CHECK_PATH = "/check"
TOKEN_ID_HEADER = "X-Vcapp-Token-Id"
TOKEN_NAME_HEADER = "X-Vcapp-Token-Name"
# The auth service's answer says where the token came from: "bearer" (Authorization header),
# "cookie" (the session cookie). A bearer token is removed before the app sees the request.
TOKEN_VIA_HEADER = "X-Vcapp-Token-Via"
# Drops the session cookie (and its separator) from a Cookie header, keeping the app's own.
SESSION_COOKIE_RE = "__Host-vcapp-session=[^;]*(;[ ]*)?"
ACCESS_LOGGER = "http.log.access"
# A lookup of the answers that fails (the answers server restarting, an app's records gone a
# moment before its page is read) uses the last answer this long, then asks again; a try that
# fails asks again at once.
STALE_ANSWERS_FOR = "2s"
# The access log rolls at this size, keeping this many old files: bounded on every machine.
ACCESS_LOG_ROLL_MB = 10
ACCESS_LOG_KEEP = 2


@dataclass(frozen=True)
class NodeSettings:
    """How this node router runs. listen: "addr:port" (the machine's mesh address in
    production). auth: where the auth service listens ("unix//path" or "127.0.0.1:port").
    resolver: "127.0.0.1:PORT" of the router's DNS answers (router/answers.py). pages: the
    directory of the "not running" pages (`page_file`)."""

    admin_socket: str
    storage_dir: str
    listen: str
    auth: str
    resolver: str
    pages: str
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


def not_running_page(name: str, app: AppRoute) -> str:
    """The HTML page a visitor of `name` gets while it has no instance to send to."""
    title, text = DOWN_PAGES.get(app.down or "", UNKNOWN_DOWN)
    return html_page(503, title.format(name=name), " ".join(filter(None, (text, app.down_detail))))["body"]


def page_file(server: str, name: str) -> str:
    """Where, under `pages`, `server`'s "not running" page of app `name` is (relative)."""
    return f"/{server}/{name}.html"


def _app_or_page(name: str, server: str, settings: NodeSettings) -> dict:
    """The app's instances as the answers name them, or its page while its file is there."""
    page = html_response(503, f"{{file.{settings.pages}{page_file(server, name)}}}")
    return {"handler": "subroute", "routes": [
        {"match": [{"file": {"root": settings.pages, "try_files": [page_file(server, name)]}}],
         "handle": [page], "terminal": True},
        {"handle": [_log_upstream(), _dynamic_proxy(name, server, settings)]},
    ]}


def _dynamic_proxy(name: str, server: str, settings: NodeSettings) -> dict:
    """A proxy to the instances that "APP.SERVER" answers (router/node_dns.py): asked again
    every answers.REFRESH and after each failed try; a lookup that fails uses the last answer."""
    proxy = reverse_proxy((), None, to_apps=True)
    resolver = {"addresses": [f"udp/{settings.resolver}"]}
    proxy["dynamic_upstreams"] = {
        "source": "srv", "name": node_dns.lookup_name(name, server), "refresh": answers.REFRESH,
        "resolver": resolver, "dial_timeout": answers.LOOKUP_TIMEOUT, "grace_period": STALE_ANSWERS_FOR,
        # The targets name IPv4 addresses: a new connection asks for A only, not A and AAAA.
        "dial_network": "tcp4"}
    proxy["transport"]["resolver"] = resolver  # the records' targets: names of addresses
    return proxy


def _app_handlers(name: str, app: AppRoute, settings: NodeSettings) -> list[dict]:
    handlers = [_strip_identity()]
    if app.policy == "token":
        handlers.append(_forward_auth(name, settings.auth))
    handlers.append(_strip_session())
    handlers.append(_app_or_page(name, SERVER, settings))
    return handlers


def _log_upstream() -> dict:
    """The access line names where the request went (an instance here, or another router)."""
    return {"handler": "log_append", "key": "upstream", "value": "{http.reverse_proxy.upstream.hostport}"}


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
        out.append(host_route(hosts, _app_handlers(name, app, settings)))
    if routes.api:
        out.append(host_route([api_host(routes.domain)], [reverse_proxy(routes.api, None, streaming=True)]))
    out.append({"handle": [html_page(404, "No app here",
                                     "Nothing is deployed at this address. Check the spelling of the link.")],
                "terminal": True})
    return out


def _hop_routes(routes: NodeRoutes, settings: NodeSettings) -> list[dict]:
    """The hop server's routes: machines only; each app's instances on this machine only, its
    retiring ones included (other routers may still send to them: router/node_dns.py)."""
    refuse: dict = {"handle": [html_page(403, "Not for you", "This port serves the cluster's machines only.")],
                    "terminal": True}
    if routes.machines:
        refuse["match"] = [{"not": [{"remote_ip": {"ranges": list(routes.machines)}}]}]
    out = [refuse]
    for name, app in routes.apps:
        hosts = [app_host(name, routes.domain), *app.domains]
        out.append(host_route(hosts, [_app_or_page(name, HOP_SERVER, settings)]))
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
        servers[HOP_SERVER] = {"listen": [settings.hop_listen], "routes": _hop_routes(routes, settings),
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
