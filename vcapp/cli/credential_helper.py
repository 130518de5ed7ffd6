"""git's credential-helper protocol for the cluster's git endpoint: the saved admin token as
the HTTP password, for the cluster's own URLs and no other host.

git runs `vcapp git-credential get` (registered by `vcapp login`, see vcapp/cli/gitconfig.py) and
talks to it on stdin/stdout (gitcredentials(7), git-credential(1)):

    stdin    protocol=https            stdout   username=admin
             host=api.apps.example.com          password=<admin token>
             path=git/blog.git                  (a blank line or nothing:
             <blank line>                        "not mine", git asks the next helper)

`store` and `erase` change nothing: the token lives in the login file, written by `vcapp login`.
The token comes from that file (or $VCAPP_TOKEN), never from argv, so it never shows in the
process list. The git endpoint ignores the user name (gitserver/auth.py); "admin" says what
the password is.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from router.routes import api_host
from vcapp.cli.client import Login

USERNAME = "admin"
DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_request(text: str) -> dict[str, str]:
    """key=value lines up to the first blank line; the last value of a key wins, as in git."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line:
            break
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    return fields


def origin(url: str) -> tuple[str, str] | None:
    """(scheme, host[:port] without the scheme's default port) of an http(s) URL, lowercase."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 literal keeps its brackets, as git sends it
        host = f"[{host}]"
    return scheme, host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"


def requested_origin(fields: dict[str, str]) -> tuple[str, str] | None:
    """The (scheme, host[:port]) git asks about, from `url=` or `protocol=` + `host=`."""
    if fields.get("url"):
        return origin(fields["url"])
    if fields.get("protocol") and fields.get("host"):
        return origin(f"{fields['protocol']}://{fields['host']}/")
    return None


def answer(fields: dict[str, str], login: Login | None) -> str:
    """What `get` prints: the token for the login's URL and its other git URLs, else nothing."""
    asked = requested_origin(fields)
    if login is None or asked is None:
        return ""
    ours = {origin(u) for u in (login.url, *login.git_urls)} - {None}
    if asked not in ours:
        return ""
    return f"username={USERNAME}\npassword={login.token}\n"


def repo_url(api_url: str, app: str) -> str:
    """The app's repository at an API URL: no user name, no token."""
    return f"{api_url.rstrip('/')}/git/{app}.git"


def cluster_git_urls(login_url: str, domain: str | None, machines: list[dict]) -> tuple[str, ...]:
    """Where else a remote of this cluster may point: the edge's https://api.DOMAIN and each
    machine's API (a remote made while logged in elsewhere), besides the login URL itself."""
    urls = ([f"https://{api_host(domain)}"] if domain else []) + [m["api_url"] for m in machines if m.get("api_url")]
    seen = {origin(login_url)}
    out = []
    for url in urls:
        key = origin(url)
        if key is not None and key not in seen:
            seen.add(key)
            out.append(url.rstrip("/"))
    return tuple(out)
