"""The build settings: the forward proxy builds reach package registries through, and the
hosts they reach directly.

    /vc/settings/build-proxy     {url, username, password (sealed), set_at, by}   absent: direct
    /vc/settings/build-no-proxy  {hosts: [...], set_at, by}                       absent: none added

A site behind a corporate proxy sets it (`vcapp settings set build.proxy
http://proxy:3128`, a login with `http://user@proxy:3128 --password-stdin`), and so does
`vcapp dev up` for its simulated cluster, whose only way out is the dev proxy
(vcapp/dev/egress.py): one code path. Build steps, base-image pulls and stack making then get
HTTP_PROXY, HTTPS_PROXY and NO_PROXY (builder/build.py Proxy). NO_PROXY keeps cluster traffic
direct (loopback, the mesh overlay with every machine's registry and API, the building
machine's registry) plus what build.no_proxy lists: a LAN registry mirror or package cache.

The proxy's password is sealed with the cluster's secrets key (vcapp/state/secrets.py) like every
secret kept in etcd; `settings show` prints the URL with the password masked.
"""

from __future__ import annotations

import ipaddress
import re
import time
from urllib.parse import quote, unquote, urlsplit

from builder.build import Proxy
from vcapp.errors import BadRequest
from vcapp.state import events, keys, secrets
from vcapp.state.membership import MESH_NET
from vcapp.state.store import Store

PROXY = "build.proxy"
NO_PROXY = "build.no_proxy"
SETTINGS = (PROXY, NO_PROXY)  # every setting `vcapp settings` knows, in the order it shows them
MASK = "***"
PASSWORD_WHAT = f"the password of {PROXY}"
MAX_LOGIN = 256
MAX_NO_PROXY = 64  # entries; NO_PROXY is one environment variable every build step carries
# A host name (optionally ".suffix" for a whole domain, as curl, pip and go read it), an IP
# address or a CIDR network; what NO_PROXY means to every client that honours it.
HOST_NAME = re.compile(r"\.?(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")


def _bad_url(value: str) -> BadRequest:
    return BadRequest(f"{PROXY}: {value!r} is not a proxy URL; write http://HOST:PORT "
                      "(http://USER@HOST:PORT with --password-stdin for a login), e.g. http://proxy.example:3128")


def check_url(value, password: str | None = None) -> tuple[str, str, str]:
    """(url without login, username, password) of a forward proxy, from http(s)://[user[:pw]@]
    host[:port]; a password may come in the URL or apart (`password`). ("", "", "") clears.
    BadRequest saying what to write."""
    if not isinstance(value, str) or (password is not None and not isinstance(password, str)):
        raise BadRequest(f"{PROXY}: give the proxy's URL as a string, e.g. http://proxy.example:3128")
    value = value.strip()
    if not value:
        return "", "", ""
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (parts.scheme not in ("http", "https") or not parts.hostname or port == -1
            or parts.path not in ("", "/") or parts.query or parts.fragment or any(c.isspace() for c in value)):
        raise _bad_url(value if parts.password is None else mask(value))
    username, inline = unquote(parts.username or ""), unquote(parts.password or "")
    password = password if password is not None else inline
    if password and not username:
        raise BadRequest(f"{PROXY}: a password needs a user name: write http://USER@HOST:PORT")
    for what, text in (("user name", username), ("password", password)):
        if len(text) > MAX_LOGIN or any(ord(c) < 0x20 or ord(c) == 0x7f for c in text):
            raise BadRequest(f"{PROXY}: the {what} is one line without control characters, "
                             f"at most {MAX_LOGIN} characters")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    url = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    return url, username, password


def check_no_proxy(value) -> list[str]:
    """The hosts builds reach directly: comma- or space-separated names (".lan" for a whole
    domain), addresses and CIDR networks; [] clears. BadRequest naming the bad entry."""
    if not isinstance(value, str):
        raise BadRequest(f"{NO_PROXY}: give the hosts as a string, e.g. mirror.lan,.corp.example,10.0.0.0/8")
    entries = [e for e in re.split(r"[,\s]+", value.strip().lower()) if e]
    if len(entries) > MAX_NO_PROXY:
        raise BadRequest(f"{NO_PROXY}: {len(entries)} entries; at most {MAX_NO_PROXY}")
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if not HOST_NAME.fullmatch(entry):
                raise BadRequest(f"{NO_PROXY}: {entry!r} is not a host name, address or network; "
                                 "write e.g. mirror.lan,.corp.example,10.0.0.0/8") from None
    return list(dict.fromkeys(entries))


def mask(url: str) -> str:
    """`url` with its password (if any) replaced by ***: what may be shown and logged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username}:{MASK}@{netloc}").geturl()


def _with_login(url: str, username: str, password: str) -> str:
    if not username:
        return url
    scheme, rest = url.split("://", 1)
    login = quote(username, safe="") + (f":{quote(password, safe='')}" if password else "")
    return f"{scheme}://{login}@{rest}"


def _shown(url: str, username: str, has_password: bool) -> str:
    """The proxy URL as `settings show` and the events print it: the password as ***."""
    if not username:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{quote(username, safe='')}" + (f":{MASK}" if has_password else "") + f"@{rest}"


def _record(store: Store) -> dict | None:
    record = store.value(keys.BUILD_PROXY)
    return record if isinstance(record, dict) and record.get("url") else None


def no_proxy(store: Store) -> list[str]:
    record = store.value(keys.BUILD_NO_PROXY)
    return list(record.get("hosts") or []) if isinstance(record, dict) else []


def show(store: Store) -> dict:
    """Every setting and its value (None: not set); a proxy password shows as ***."""
    record = _record(store)
    shown = None
    if record:
        shown = _shown(record["url"], record.get("username", ""), bool(record.get("password")))
    hosts = no_proxy(store)
    return {PROXY: shown, NO_PROXY: ",".join(hosts) if hosts else None}


def set_setting(store: Store, name: str, value, who: str = "admin", password: str | None = None) -> dict:
    """Store (or with "", clear) a setting; BadRequest for an unknown name or a bad value,
    before anything changes."""
    if name not in SETTINGS:
        raise BadRequest(f"no setting {name!r}; settings are {', '.join(SETTINGS)}")
    if name == NO_PROXY:
        if password is not None:
            raise BadRequest(f"{NO_PROXY} takes no password")
        return _set_no_proxy(store, check_no_proxy(value), who)
    url, username, secret = check_url(value, password)
    if url:
        store.put(keys.BUILD_PROXY, {"url": url, "username": username,
                                     "password": secrets.seal(secret) if secret else "",
                                     "set_at": time.time(), "by": who})
        shown = _shown(url, username, bool(secret))
        events.record(store, "settings", f"builds reach package registries through {shown} (set by {who})")
    else:
        store.delete(keys.BUILD_PROXY)
        events.record(store, "settings", f"builds reach package registries directly (proxy cleared by {who})")
    return show(store)


def _set_no_proxy(store: Store, hosts: list[str], who: str) -> dict:
    if hosts:
        store.put(keys.BUILD_NO_PROXY, {"hosts": hosts, "set_at": time.time(), "by": who})
        events.record(store, "settings", f"builds reach {', '.join(hosts)} directly (set by {who})")
    else:
        store.delete(keys.BUILD_NO_PROXY)
        events.record(store, "settings", f"builds reach no extra hosts directly ({NO_PROXY} cleared by {who})")
    return show(store)


def for_build(store: Store, registry: str, key: bytes | None = None) -> Proxy | None:
    """The Proxy a build on the machine whose registry is `registry` (host:port) gets, or None.
    Its URL carries the login (for the build's environment only, never shown or logged)."""
    record = _record(store)
    if not record:
        return None
    password = secrets.unseal(record["password"], PASSWORD_WHAT, key) if record.get("password") else ""
    url = _with_login(record["url"], record.get("username", ""), password)
    return Proxy(url, no_proxy=(registry.rsplit(":", 1)[0], str(MESH_NET), *no_proxy(store)))
