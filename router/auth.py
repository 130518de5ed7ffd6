"""The end-user token check behind Caddy's forward_auth: a small WSGI app.

Caddy sends it, for every request to a `token` app, GET /check?app=APP with the client's
headers plus X-Forwarded-Method and X-Forwarded-Uri. It answers:

    200  + X-Vcapp-Token-Id,    a valid `Authorization: Bearer <token>` or session cookie;
           X-Vcapp-Token-Name,  the token's name, and where it came from (Via: bearer|cookie),
           X-Vcapp-Token-Via    so the router can take the credential off the request
    302  + Set-Cookie, Location  a valid `?token=` in the URL: cookie set, token removed
    401  small HTML page         missing, malformed, unknown, expired, revoked, other app
    503  small HTML page         the token store cannot be asked right now

Caddy passes 2xx on to the app and anything else straight back to the client.
"""

from __future__ import annotations

import html
import time
from http.cookies import SimpleCookie
from typing import Callable, Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from router import session
from router.tokencheck import LookupUnavailable, TokenChecker
from router.tokens import TokenFormatError, TokenRecord, hash_token, parse

TOKEN_PARAM = "token"
ID_HEADER = "X-Vcapp-Token-Id"
NAME_HEADER = "X-Vcapp-Token-Name"
VIA_HEADER = "X-Vcapp-Token-Via"

REASONS = {
    "missing": ("This app needs an access token",
                "Open the link with ?token=YOUR_TOKEN once (your browser then remembers it), or send "
                "the header Authorization: Bearer YOUR_TOKEN. Ask the app's admin for a token."),
    "malformed": ("That is not an access token",
                  "Access tokens start with vca_ and are 47 characters long. Check that you copied all of it."),
    "unknown": ("Access token not recognised",
                "This token does not exist for this cluster. Ask the app's admin for a new one."),
    "expired": ("Access token expired",
                "This token has expired. Ask the app's admin for a new one."),
    "revoked": ("Access token revoked",
                "This token was revoked by the app's admin. Ask them for a new one if you still need access."),
    "wrong-app": ("Access token is for another app",
                  "This token opens a different app. Use the token you were given for this one."),
    "session": ("Your session has ended",
                "Your saved access is no longer valid. Open the link with ?token=YOUR_TOKEN again."),
}


def _page(title: str, text: str) -> bytes:
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>"
        "<body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\">"
        "<h1>{t}</h1><p>{x}</p></body></html>"
    ).format(t=html.escape(title), x=html.escape(text)).encode()


class Response:
    def __init__(self, status: str, headers: list[tuple[str, str]] | None = None, body: bytes = b""):
        self.status, self.headers, self.body = status, headers or [], body


def _denied(reason: str, app: str, clear_cookie: bool = False) -> Response:
    title, text = REASONS[reason]
    headers = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"),
               ("WWW-Authenticate", f'Bearer realm="{app}", error="invalid_token", error_description="{reason}"')]
    if clear_cookie:
        headers.append(("Set-Cookie", f"{session.COOKIE_NAME}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"))
    return Response("401 Unauthorized", headers, _page(title, text))


def _unavailable() -> Response:
    return Response("503 Service Unavailable",
                    [("Content-Type", "text/html; charset=utf-8"), ("Retry-After", "5")],
                    _page("Cannot check access right now",
                          "The cluster could not check your access token. Try again in a few seconds."))


def clean_uri(uri: str) -> str:
    """The request URI without the token query parameter."""
    parts = urlsplit(uri)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != TOKEN_PARAM]
    return urlunsplit(("", "", parts.path or "/", urlencode(query), parts.fragment))


class AuthService:
    """Decides one forward_auth request. key: the per-cluster session signing key."""

    def __init__(self, checker: TokenChecker, key: bytes, clock: Callable[[], float] = time.time):
        session.sign(key, "x", "0" * 64, 0)  # fails early on a short key
        self.checker = checker
        self.key = key
        self.clock = clock

    def _check_hash(self, token_hash: str, app: str) -> tuple[TokenRecord | None, str | None]:
        record = self.checker.record(token_hash)
        if record is None:
            return None, "unknown"
        return record, record.problem(app, self.clock())

    def _check_token(self, text: str, app: str) -> tuple[TokenRecord | None, str | None, str]:
        try:
            token = parse(text)
        except TokenFormatError:
            return None, "malformed", ""
        token_hash = hash_token(token)
        record, problem = self._check_hash(token_hash, app)
        return record, problem, token_hash

    def _login(self, app: str, uri: str, text: str) -> Response:
        record, problem, token_hash = self._check_token(text, app)
        if problem:
            return _denied(problem, app)
        now = self.clock()
        max_age = session.MAX_SESSION_S
        if record.expires_at is not None:
            max_age = min(max_age, int(record.expires_at - now))
        value = session.sign(self.key, app, token_hash, int(now))
        cookie = f"{session.COOKIE_NAME}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}"
        return Response("302 Found", [("Location", clean_uri(uri)), ("Set-Cookie", cookie),
                                      ("Cache-Control", "no-store")])

    def _allowed(self, record: TokenRecord, via: str) -> Response:
        # A header value is printable ASCII: control and non-ASCII characters go escaped (\n, \u00e9).
        name = record.name.encode("unicode_escape").decode("ascii")
        return Response("200 OK", [(ID_HEADER, record.id), (NAME_HEADER, name), (VIA_HEADER, via)])

    def decide(self, app: str, uri: str, authorization: str, cookie_header: str) -> Response:
        query = dict(parse_qsl(urlsplit(uri).query, keep_blank_values=True))
        if TOKEN_PARAM in query:
            return self._login(app, uri, query[TOKEN_PARAM])
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            record, problem, _ = self._check_token(credential, app)
            return _denied(problem, app) if problem else self._allowed(record, "bearer")
        jar = SimpleCookie()
        try:
            jar.load(cookie_header)
        except Exception:
            jar = SimpleCookie()
        if session.COOKIE_NAME in jar:
            token_hash = session.verify(self.key, jar[session.COOKIE_NAME].value, app, self.clock())
            if token_hash is None:
                return _denied("session", app, clear_cookie=True)
            record, problem = self._check_hash(token_hash, app)
            return _denied(problem, app, clear_cookie=True) if problem else self._allowed(record, "cookie")
        return _denied("missing", app)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """WSGI entry point: GET /check?app=APP."""
        query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        app = query.get("app", "")
        if environ.get("PATH_INFO") != "/check" or not app:
            resp = Response("404 Not Found", [("Content-Type", "text/plain")], b"GET /check?app=APP\n")
        else:
            try:
                resp = self.decide(app, environ.get("HTTP_X_FORWARDED_URI", "/"),
                                   environ.get("HTTP_AUTHORIZATION", ""), environ.get("HTTP_COOKIE", ""))
            except LookupUnavailable:
                resp = _unavailable()
        start_response(resp.status, resp.headers + [("Content-Length", str(len(resp.body)))])
        return [resp.body]
