"""The one place where failures become JSON responses: {"error": message} with a status.

VcError carries its own status and message; an unreachable etcd is 503; Flask's own HTTP
errors (unknown route, wrong method) keep their status; anything else is a 500 whose details
go to the server log, never to the client.
"""

from __future__ import annotations

import logging

from etcd3gw.exceptions import Etcd3Exception
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from vcapp.api import body
from vcapp.errors import VcError
from vcapp.state.store import StoreUnavailable, error_text

log = logging.getLogger(__name__)

STORE_DOWN = ("the cluster state store (etcd) is not answering: {}; "
              "check that most etcd members are up (`vcapp status` on a cluster machine)")


def error_response(message: str, status: int) -> tuple[Response, int]:
    return jsonify(error=message), status


# etcd between two states (a leader election, a member just removed) answers again within a
# second or two: a 503 for it says when to ask again (RFC 9110 Retry-After), which the CLI
# does for reads (vcapp/cli/client.py).
STORE_RETRY_AFTER_S = 1


def store_down(detail: object) -> tuple[Response, int]:
    response, status = error_response(STORE_DOWN.format(detail), 503)
    response.headers["Retry-After"] = str(STORE_RETRY_AFTER_S)
    return response, status


def register(app: Flask) -> None:
    @app.errorhandler(VcError)
    def vc_error(e: VcError):
        return error_response(e.message, e.status)

    @app.errorhandler(StoreUnavailable)
    def store_unavailable(e: StoreUnavailable):
        return store_down(e)

    @app.errorhandler(Etcd3Exception)
    def store_error(e: Etcd3Exception):
        log.error("etcd refused a request: %s: %s", type(e).__name__, error_text(e).strip()[:300])
        return store_down(f"etcd answered with an error ({type(e).__name__})")

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        hints = {404: "no such API route; GET /openapi.json lists them",
                 413: body.PAST_LIMIT,
                 405: f"method not allowed here; allowed: {', '.join(sorted(e.valid_methods or []))}"
                 if getattr(e, "valid_methods", None) else "method not allowed here"}
        return error_response(hints.get(e.code, e.description or e.name), e.code or 500)

    @app.errorhandler(Exception)
    def unexpected(e: Exception):
        log.exception("unexpected error in the admin API")
        return error_response("internal error in the admin API; the server log on this machine has details", 500)
