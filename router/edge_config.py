"""Caddy JSON for an edge: the public entry that terminates TLS and hands requests to nodes.

Pure: EdgeRoutes + EdgeSettings -> dict. api.D goes to every node router (each one reaches the
admin API). Every other name under D, and the custom domains, go to the node routers that run
the app: the config names none of them; Caddy looks the request's hostname up in the edge's
own DNS answers (router/edge_dns.py, `dynamic_upstreams`), so a new app, a deploy or a move
changes an answer and never this config. Only a machine joining or leaving, a custom domain or
the edge's settings reload Caddy, and every reload closes a few requests in flight
(bench/edge_reload_bench.py). When the app's routers all fail for PREFERRED_TRY_DURATION (a
move not yet seen, a machine just dead) Caddy answers 503 inside the server, and its error
route sends the request to any live node router instead, which forwards it: two mesh hops,
not a stall. Without the answers (no resolver, or node routers on different ports) every
request goes to any router.
Certificates: in dev mode one wildcard `*.D` from Caddy's internal CA (the
client trusts its exported root); otherwise one certificate per hostname from ACME, obtained
on demand at the name's first TLS handshake and only after the edge daemon's permission
endpoint (`ask_url`) says the cluster serves that name: a Host or SNI the cluster does not
serve never reaches the CA. Caddy's issuance and renewal lines go to `cert_log` as JSON,
which the daemon reads for each name's status (vcapp/edge/certificates.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from router import answers, edge_dns
from router.caddyjson import (NODE_HEALTH_HOST, NODE_HEALTH_PATH, PREFERRED_TRY_DURATION, RETRY_METHODS,
                              base_document, host_route, html_page, reverse_proxy)
from router.routes import EdgeRoutes, api_host

SERVER = "edge"
# The dev internal CA's name. Caddy answers /pki/ca/local from the config it runs, and just after
# a load that may still be the bootstrap one, whose lazily made default CA ("Caddy Local
# Authority") signs nothing the edge serves: a reader of the CA checks this name.
DEV_CA_NAME = "vcapp dev edge CA"
# A config change (a machine, a custom domain) reloads Caddy, and the requests in flight then
# finish on the old config for up to this long. At the edge they include `git push` with its
# build log streamed back (minutes for a first build), `vcapp logs -f` and terminal sessions:
# a node router's SHUTDOWN_GRACE (seconds) would cut them at any other admin's change. Caddy
# stops waiting as soon as they are done; a stop (SIGTERM) is bounded by router/caddy.py.
EDGE_GRACE = "1h"
# Caddy's logger for active health checks: the api route checks every node router each
# second, and a router that is down fails its check each second. Its lines are sampled: the
# first HEALTH_LOG_FIRST of each message per minute, so a router that stops answering still
# shows ("HTTP request failed") and a long outage does not fill the log.
HEALTH_CHECK_LOGGER = "http.handlers.reverse_proxy.health_checker.active"
HEALTH_LOG_FIRST = 5
HEALTH_LOG_INTERVAL_NS = 60 * 10**9  # Caddy reads this one as nanoseconds; a "1m" string drops every line
# certmagic's loggers for getting and renewing certificates (one line per attempt, its outcome
# with the name and the CA's error), written to EdgeSettings.cert_log; a few MB of history.
CERT_LOGGERS = ("tls.obtain", "tls.renew", "tls.on_demand")
CERT_LOG_ROLL_MB, CERT_LOG_KEEP = 2, 2


@dataclass(frozen=True)
class EdgeSettings:
    """How this edge runs (not what it routes).

    dev: internal CA instead of ACME. ca_cert/ca_key: a root to share between several dev
    edges (otherwise each makes its own). acme_email: contact for the ACME account;
    acme_directory: the CA's directory URL (Caddy's default, Let's Encrypt, when None);
    acme_ca_root: a PEM file of roots to trust for that URL (a private CA's TLS); ask_url:
    the endpoint Caddy asks before getting a certificate for a name (`?domain=NAME`, 200 =
    yes); cert_log: where Caddy writes its issuance lines; resolver: "127.0.0.1:PORT" of the
    edge's DNS answers (router/edge_dns.py), None: every app's requests to any router."""

    admin_socket: str
    storage_dir: str
    https_port: int = 443
    http_port: int = 80
    dev: bool = False
    acme_email: str | None = None
    acme_directory: str | None = None
    acme_ca_root: str | None = None
    ask_url: str | None = None
    cert_log: str | None = None
    ca_cert: str | None = None
    ca_key: str | None = None
    resolver: str | None = None


def _tls_app(routes: EdgeRoutes, s: EdgeSettings) -> dict:
    if s.dev:
        issuer = {"module": "internal", "ca": "local"}
        return {
            "certificates": {"automate": [f"*.{routes.domain}"]},
            "automation": {"policies": [{"issuers": [issuer]}]},
        }
    acme: dict = {"module": "acme"}
    if s.acme_email:
        acme["email"] = s.acme_email
    if s.acme_directory:
        acme["ca"] = s.acme_directory
    if s.acme_ca_root:
        acme["trusted_roots_pem_files"] = [s.acme_ca_root]
    policy: dict = {"issuers": [acme]}
    automation: dict = {"policies": [policy]}
    if s.ask_url:
        policy["on_demand"] = True
        automation["on_demand"] = {"permission": {"module": "http", "endpoint": s.ask_url}}
    return {"automation": automation}


def _pki_app(s: EdgeSettings) -> dict:
    ca: dict = {"name": DEV_CA_NAME, "install_trust": False}
    if s.ca_cert and s.ca_key:
        ca["root"] = {"certificate": s.ca_cert, "private_key": s.ca_key, "format": "pem_file"}
    return {"certificate_authorities": {"local": ca}}


def _routes(routes: EdgeRoutes, s: EdgeSettings) -> list[dict]:
    unknown = {"handle": [html_page(404, "No app here",
                                    "Nothing is deployed at this address. Check the spelling of the link.")],
               "terminal": True}
    served = [f"*.{routes.domain}", *sorted({h for _, hosts in routes.domains for h in hosts})]
    if not routes.nodes:
        nobody = html_page(503, "No machine is serving right now",
                           "The cluster has no live machine behind this edge. Try again in a minute; "
                           "if it lasts, the cluster admin should run `vcapp status`.")
        return [host_route([api_host(routes.domain), *served], [nobody]), unknown]
    api = reverse_proxy(routes.nodes, NODE_HEALTH_PATH, NODE_HEALTH_HOST, streaming=True,
                        resend_router_failures=True)
    return [host_route([api_host(routes.domain)], [api]), host_route(served, [_app_routers(routes, s)]), unknown]


def _app_routers(routes: EdgeRoutes, s: EdgeSettings) -> dict:
    """The node routers the edge's answers name for the request's hostname (router/edge_dns.py);
    any router when there are no answers (the lookup failed, or none are configured). A router
    whose dials failed rests like in any pool (caddyjson.MAX_FAILS), so a killed machine costs
    two failed dials."""
    proxy = reverse_proxy(routes.nodes, None, try_duration=PREFERRED_TRY_DURATION)
    port = edge_dns.router_port(routes.nodes)
    if s.resolver and port:
        proxy["dynamic_upstreams"] = {
            "source": "a", "name": edge_dns.lookup_name(), "port": str(port), "refresh": answers.REFRESH,
            "resolver": {"addresses": [f"udp/{s.resolver}"]}, "dial_timeout": answers.LOOKUP_TIMEOUT,
            "versions": {"ipv4": True}}
    return proxy


def _any_router(nodes: tuple[str, ...]) -> dict:
    """Every live node router (each one forwards to wherever the app runs)."""
    return reverse_proxy(nodes, NODE_HEALTH_PATH, NODE_HEALTH_HOST)


def error_routes(routes: EdgeRoutes) -> list[dict]:
    """Errors of a handler (an app's answers, 503 included, are responses, never errors): 503,
    no node router running the app was available; or 502 for an idempotent request, its round
    trip failed after the handler's tries ran out (a request in flight to a machine that died,
    cut only once the cluster saw the death: router/cutoff.py). Any live node router will do."""
    if not routes.nodes:
        return []
    methods = ", ".join(f'"{m}"' for m in RETRY_METHODS)
    return [{"match": [{"expression": f"{{http.error.status_code}} == 503 || ({{http.error.status_code}} == 502 "
                                      f"&& {{http.request.method}} in [{methods}])"}],
             "handle": [_any_router(routes.nodes)], "terminal": True}]


def render(routes: EdgeRoutes, settings: EdgeSettings) -> dict:
    """The whole Caddy config document of an edge."""
    doc = base_document(settings.admin_socket, settings.storage_dir)
    doc["apps"] = {
        "http": {
            "http_port": settings.http_port,
            "https_port": settings.https_port,
            "grace_period": EDGE_GRACE,
            "servers": {
                SERVER: {
                    "listen": [f":{settings.https_port}"],
                    # No wildcard certificate from ACME (it needs a DNS challenge): each name
                    # under it gets its own, on demand (_tls_app).
                    **({} if settings.dev else {"automatic_https": {"skip_certificates": [f"*.{routes.domain}"]}}),
                    "routes": _routes(routes, settings),
                    "errors": {"routes": error_routes(routes)},
                    "protocols": ["h1", "h2"],
                    # The admin API's terminal sessions read the request while they answer
                    # (vcapp/terminal.py); HTTP/2 always can, HTTP/1 only with this.
                    "enable_full_duplex": True,
                }
            },
        },
        "tls": _tls_app(routes, settings),
    }
    if settings.dev:
        doc["apps"]["pki"] = _pki_app(settings)
    doc["logging"] = _logging(settings.cert_log)
    return doc


def _logging(cert_log: str | None) -> dict:
    """Everything as Caddy logs it, the health checker sampled (see HEALTH_CHECK_LOGGER);
    the certificate lines also as JSON in `cert_log`."""
    logs: dict = {
        "default": {"exclude": [HEALTH_CHECK_LOGGER]},
        "health_checks": {"include": [HEALTH_CHECK_LOGGER], "sampling": {
            "interval": HEALTH_LOG_INTERVAL_NS, "first": HEALTH_LOG_FIRST, "thereafter": 0}},
    }
    if cert_log:
        logs["certificates"] = {"include": list(CERT_LOGGERS), "level": "INFO", "encoder": {"format": "json"},
                                "writer": {"output": "file", "filename": cert_log,
                                           "roll_size_mb": CERT_LOG_ROLL_MB, "roll_keep": CERT_LOG_KEEP}}
    return {"logs": logs}
