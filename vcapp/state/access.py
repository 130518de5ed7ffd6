"""How an app is reached: its access policy and its custom domains, two fields of its spec.

    /vc/apps/<app>   {..., "policy": "public" | "token", "domains": ["www.example.org", ...]}

Changes go through `vcapp.state.apps.update_app` (a guarded read-modify-write). A custom domain
belongs to one app at a time, and may not sit under the cluster's own domain (those names
are the apps' own subdomains). Node routers and edges pick changes up within a tick.
"""

from __future__ import annotations

from router.routes import POLICIES, RoutesError, check_domain
from vcapp.errors import BadRequest, Conflict
from vcapp.state import apps, events, keys
from vcapp.state.store import Store

MAX_DOMAINS = 20  # per app: each is a certificate to keep renewed


def policy(value: object) -> str:
    text = str(value or "").strip().lower()
    if text not in POLICIES:
        raise BadRequest(f"policy: {value!r} is not a policy; use one of {', '.join(POLICIES)} "
                         "(token: visitors need an access token from `vcapp tokens create APP`)")
    return text


def hostname(value: object, cluster_domain: str) -> str:
    host = str(value or "").strip().lower().rstrip(".")
    try:
        check_domain(host)
    except RoutesError:
        raise BadRequest(f"domain: {value!r} is not a host name like www.example.org") from None
    if cluster_domain and (host == cluster_domain or host.endswith("." + cluster_domain)):
        raise BadRequest(f"domain: {host} is under the cluster's domain {cluster_domain}; apps get "
                         f"<app>.{cluster_domain} already, add a name outside it")
    return host


def set_policy(store: Store, app: str, value: object) -> dict:
    wanted = policy(value)
    spec = apps.update_app(store, app, lambda s: dict(s, policy=wanted))
    events.record(store, "app.access", f"app {app} access policy set to {wanted}", app=app)
    return spec


def add_domain(store: Store, app: str, value: object) -> dict:
    """Serve `app` at another host name too (the owner points its DNS at the edge)."""
    cluster = store.value(keys.CLUSTER) or {}
    host = hostname(value, cluster.get("domain", ""))
    for other in apps.list_apps(store):
        if other["name"] != app and host in (other.get("domains") or []):
            raise Conflict(f"{host} already serves app {other['name']}; remove it there first")

    def change(spec: dict) -> dict:
        domains = sorted(set(spec.get("domains") or []) | {host})
        if len(domains) > MAX_DOMAINS:
            raise BadRequest(f"app {app} has {MAX_DOMAINS} custom domains already")
        return dict(spec, domains=domains)

    spec = apps.update_app(store, app, change)
    events.record(store, "app.domain.added", f"app {app} now also served at {host}", app=app)
    return spec


def remove_domain(store: Store, app: str, value: object) -> dict:
    host = str(value or "").strip().lower().rstrip(".")
    spec = apps.get_app(store, app)
    if host not in (spec.get("domains") or []):
        raise BadRequest(f"app {app} is not served at {host}; `vcapp domains list {app}` shows its domains")
    spec = apps.update_app(store, app, lambda s: dict(s, domains=[d for d in s.get("domains") or [] if d != host]))
    events.record(store, "app.domain.removed", f"app {app} no longer served at {host}", app=app)
    return spec
