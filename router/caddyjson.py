"""Building blocks of Caddy JSON config shared by the edge and the node router.

Pure functions returning plain dicts. Every timer the data plane runs on is named here with
the reason for its value; the edge and node configs only assemble these pieces.
"""

from __future__ import annotations

import html

# A mesh or LAN round trip is milliseconds: a connect that takes a second means the peer is
# gone (powered off, black-holed), so give up and try another upstream.
DIAL_TIMEOUT = "1s"
# Keep trying other upstreams for this long before answering 502: long enough to step over a
# node that died with requests in flight, short enough that a client still waits for it.
TRY_DURATION = "5s"
# Pause between attempts while every upstream looks down (e.g. during a failover).
TRY_INTERVAL = "100ms"
# A request whose round trip failed after it reached an upstream (its machine died with the
# request in flight: router/cutoff.py) is sent to another only when sending it twice is safe.
# A failed dial is always retried, whatever the method: the request never reached an app.
RETRY_METHODS = ("GET", "HEAD", "OPTIONS")
# A node router answers 502 itself when its own tries of a request end early: a config load
# ends the old config's retries with it (router/cutoff.py), e.g. a GET of the admin API in
# flight on every router while `vcapp apps create` adds a route (a `git push` right after it
# failed so). The edge sends such an idempotent request again, to a router, when the upstream
# behind it never answers 502 itself (the admin API's GETs; an app's 502 is its own answer).
ROUTER_FAILED = "{http.reverse_proxy.status_code} == 502"
# The edge tries the node routers running an app this long before any node router will do
# (router/edge_config.py): a dial that times out (DIAL_TIMEOUT) and a retry on the app's other
# router fit, and so does a health interval, so a move is seen; a router running the app that
# missed a check or failed one request under load stalls the app this long at most, not 5 s.
PREFERRED_TRY_S = 3.0
PREFERRED_TRY_DURATION = f"{PREFERRED_TRY_S:g}s"
# Active health checks: a dead upstream leaves the rotation within about a second.
HEALTH_INTERVAL = "1s"
HEALTH_TIMEOUT = "1s"
# Passive health: a node router is out for FAIL_DURATION after MAX_FAILS failed requests within
# it (an active check's success does not bring it back sooner). One failure is not enough: a
# router reloads when an app or a machine comes or goes, and a request its old server reads
# after the reload began fails once, on a live router (Go's server closes the connection
# unanswered; a POST is lost: bench/router_reload_bench.py). A dead router fails every dial, so
# it still rests after two, until the cluster has seen the death (router/edge_dns.py answers
# without it).
FAIL_DURATION = "5s"
MAX_FAILS = 2
# An app's instance is out after three failed requests, and only for a moment: one slow
# connect under load (an app whose accept queue overflowed drops a SYN, resent 1 s later,
# when the 1 s dial has already failed) must not leave a one-instance app with no upstream.
# While none is available, requests wait for one (TRY_DURATION) instead of failing; the
# router's answers keep a dead instance out (only serving ones are named: router/node_dns.py).
BACKEND_FAIL_DURATION = "2s"
BACKEND_MAX_FAILS = 3
# An app may take a while to answer; a stuck upstream must not hold a connection forever.
RESPONSE_HEADER_TIMEOUT = "60s"
# The node router answers this virtual host itself, so the edge can health-check a node
# without depending on any one app. ".invalid" can never be a real hostname (RFC 2606).
# On a config change or stop, requests in flight get this long to finish before Caddy cuts
# them; keep-alive idle connections close at once.
SHUTDOWN_GRACE = "5s"
# WebSockets outlive config reloads (an app or a machine that comes or goes) this long.
STREAM_CLOSE_DELAY = "5m"
NODE_HEALTH_HOST = "health.vcapp.invalid"
NODE_HEALTH_PATH = "/.vcapp/health"


def base_document(admin_socket: str, storage_dir: str) -> dict:
    """Admin API on a unix socket (no TCP port to protect), config kept only in memory
    (config_sync pushes it again after a restart), certificates stored under storage_dir."""
    return {
        "admin": {"listen": f"unix/{admin_socket}", "config": {"persist": False}},
        "storage": {"module": "file_system", "root": storage_dir},
        "apps": {},
    }


def upstreams(addresses: tuple[str, ...] | list[str]) -> list[dict]:
    return [{"dial": a} for a in addresses]


def reverse_proxy(addresses: tuple[str, ...] | list[str], health_path: str | None,
                  health_host: str | None = None,
                  try_duration: str = TRY_DURATION, to_apps: bool = False, streaming: bool = False,
                  resend_router_failures: bool = False) -> dict:
    """A health-aware, retrying reverse proxy to `addresses`; Host and X-Forwarded-* kept.
    `to_apps`: the upstreams are app instances (BACKEND_MAX_FAILS). `streaming`: every piece of
    an answer goes on at once (the admin API's logs, builds and terminal sessions).
    `resend_router_failures`: an idempotent request answered 502 is tried again (ROUTER_FAILED)."""
    max_fails, rest = (BACKEND_MAX_FAILS, BACKEND_FAIL_DURATION) if to_apps else (MAX_FAILS, FAIL_DURATION)
    retry: list[dict] = [{"method": list(RETRY_METHODS)}]
    if resend_router_failures:  # the first set decides transport errors, this one answers
        retry.append({"method": list(RETRY_METHODS), "expression": ROUTER_FAILED})
    checks: dict = {"passive": {"fail_duration": rest, "max_fails": max_fails}}
    if health_path:
        active: dict = {"uri": health_path, "interval": HEALTH_INTERVAL, "timeout": HEALTH_TIMEOUT}
        if health_host:
            active["headers"] = {"Host": [health_host]}
        checks["active"] = active
    return {
        "handler": "reverse_proxy",
        **({"flush_interval": -1} if streaming else {}),
        **({"upstreams": upstreams(addresses)} if addresses else {}),  # none: dynamic ones, set by the caller
        "load_balancing": {
            "selection_policy": {"policy": "round_robin"},
            "try_duration": try_duration,
            "try_interval": TRY_INTERVAL,
            "retry_match": retry,
        },
        "health_checks": checks,
        "stream_close_delay": STREAM_CLOSE_DELAY,
        "transport": {
            "protocol": "http",
            "dial_timeout": DIAL_TIMEOUT,
            "response_header_timeout": RESPONSE_HEADER_TIMEOUT,
        },
    }


def html_page(status: int, title: str, text: str) -> dict:
    """A static_response handler with a small, self-explaining HTML page."""
    body = (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>"
        "<body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\">"
        "<h1>{t}</h1><p>{x}</p></body></html>"
    ).format(t=html.escape(title), x=html.escape(text))
    return html_response(status, body)


def html_response(status: int, body: str) -> dict:
    """A static_response handler answering `body` (HTML, or a placeholder that reads it)."""
    return {
        "handler": "static_response",
        "status_code": status,
        "headers": {"Content-Type": ["text/html; charset=utf-8"], "Cache-Control": ["no-store"]},
        "body": body,
    }


def host_route(hosts: list[str], handlers: list[dict]) -> dict:
    return {"match": [{"host": hosts}], "handle": handlers, "terminal": True}
