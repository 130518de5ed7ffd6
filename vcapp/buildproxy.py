"""The cluster setting `build.proxy`: the forward proxy builds reach package registries through.

    /vc/settings/build-proxy  {url, set_at, by}   absent: build steps go out directly

A site behind a corporate proxy sets it (`vcapp settings set build.proxy http://proxy:3128`),
and so does `vcapp dev up` for its simulated cluster, whose only way out is the dev proxy
(vcapp/dev/egress.py): one code path. Build steps then get HTTP_PROXY, HTTPS_PROXY and
NO_PROXY (builder/build.py Proxy); NO_PROXY keeps cluster traffic direct: loopback, the
mesh overlay (every machine's registry and API) and the building machine's registry.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from builder.build import Proxy
from vcapp import events, keys
from vcapp.errors import BadRequest
from vcapp.membership import MESH_NET
from vcapp.store import Store

NAME = "build.proxy"
SETTINGS = (NAME,)  # every setting `vcapp settings` knows, in the order it shows them


def check_url(value) -> str:
    """http(s)://host[:port] of a forward proxy (BadRequest saying what to write); "" clears."""
    if not isinstance(value, str):
        raise BadRequest(f"{NAME}: give the proxy's URL as a string, e.g. http://proxy.example:3128")
    value = value.strip()
    if not value:
        return ""
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (parts.scheme not in ("http", "https") or not parts.hostname or port == -1
            or parts.path not in ("", "/") or parts.query or parts.fragment or any(c.isspace() for c in value)):
        raise BadRequest(f"{NAME}: {value!r} is not a proxy URL; write http://HOST:PORT, "
                         "e.g. http://proxy.example:3128")
    return value.rstrip("/")


def get(store: Store) -> str | None:
    record = store.value(keys.BUILD_PROXY)
    return record.get("url") if isinstance(record, dict) else None


def show(store: Store) -> dict:
    """Every setting and its value (None: not set)."""
    return {NAME: get(store)}


def set_setting(store: Store, name: str, value, who: str = "admin") -> dict:
    """Store (or with "", clear) a setting; BadRequest for an unknown name or a bad value."""
    if name not in SETTINGS:
        raise BadRequest(f"no setting {name!r}; settings are {', '.join(SETTINGS)}")
    url = check_url(value)
    if url:
        store.put(keys.BUILD_PROXY, {"url": url, "set_at": time.time(), "by": who})
        events.record(store, "settings", f"builds reach package registries through {url} (set by {who})")
    else:
        store.delete(keys.BUILD_PROXY)
        events.record(store, "settings", f"builds reach package registries directly (proxy cleared by {who})")
    return show(store)


def for_build(store: Store, registry: str) -> Proxy | None:
    """The Proxy a build on the machine whose registry is `registry` (host:port) gets, or None."""
    url = get(store)
    if not url:
        return None
    return Proxy(url, no_proxy=(registry.rsplit(":", 1)[0], str(MESH_NET)))
