"""HTTP Basic authentication for the git endpoint: the password is an admin token.

Owns parsing the `Authorization` header and answering 401 with a `WWW-Authenticate`
challenge, so git asks its credential helper (or the user) for the token. Checking the
token is the caller's: `authenticate(token) -> who | None`. The token is never logged,
never echoed, never stored in the WSGI environ; only `who` is (under WHO_KEY).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

Authenticate = Callable[[str], "str | None"]
WHO_KEY = "vcapp.git.who"
REALM = "vcapp"


def basic_password(header: str | None) -> str | None:
    """The password from a `Basic` Authorization header value, or None if absent/malformed.

    The user name is ignored: git sends whatever the remote URL or the prompt gave it.
    """
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, sep, password = decoded.partition(":")
    return password if sep and password else None


def unauthorized(start_response: Callable, message: str) -> list[bytes]:
    """A 401 that makes git prompt for / look up credentials; the body is shown as `remote:`."""
    body = (message + "\n").encode("utf-8")
    start_response("401 Unauthorized", [
        ("WWW-Authenticate", f'Basic realm="{REALM}"'),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ])
    return [body]


class BasicAuth:
    """WSGI middleware: every request needs a valid token, else 401; sets environ[WHO_KEY]."""

    def __init__(self, app: Callable, authenticate: Authenticate):
        self.app = app
        self.authenticate = authenticate

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        token = basic_password(environ.get("HTTP_AUTHORIZATION"))
        if token is None:
            return unauthorized(start_response, "authentication required: use an admin token as the password")
        try:
            who = self.authenticate(token)
        except Exception as e:  # e.g. etcd unreachable: say so rather than a bare 500
            log.exception("git: authenticate() failed")
            body = f"cannot check the token right now ({type(e).__name__}): try again in a moment\n".encode()
            start_response("503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8"),
                                                       ("Content-Length", str(len(body)))])
            return [body]
        if not who:
            log.info("git: rejected a token for %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            return unauthorized(start_response, "invalid admin token: check it with `vcapp login`")
        environ[WHO_KEY] = who
        return self.app(environ, start_response)
