"""Where a node router sends each app's requests, told to its Caddy as DNS answers
(router/answers.py).

A node router's Caddy config names no instance (router/node_config.py): each app's proxy asks
for the SRV records of "APP.SERVER.ZONE" (cached REFRESH, asked again after a failed try), each
record an instance's port and its address as a name (answers.target). Where an app's
instances run, which are healthy and which are leaving this machine are only answers: a
deploy, a scale, a failover or a health change writes them, and no router reloads.

    answers(routes) -> {"srv": {"APP.node": [[port, target], ...], "APP.hop": [...]}}   pure
    lookup_name(app, server) -> the absolute name Caddy asks

The node server's answer for an app is its instances on this machine while any serves (the
request crosses no machine), else the hop servers of the machines running it; the hop
server's is this machine's instances, the ones leaving it included (routers that have not
switched yet may still send to them: vcapp/state/routeswitch.py). An app with none gets no
record: its route answers the "not running" page (router/node_config.py) before it asks.
"""

from __future__ import annotations

from router.answers import ZONE, target
from router.routes import AppRoute, NodeRoutes

NODE, HOP = "node", "hop"  # the node router's two servers (router/node_config.py SERVER, HOP_SERVER)


def lookup_name(app: str, server: str) -> str:
    """The name `server`'s proxy for `app` asks (absolute: no search domains)."""
    return f"{app}.{server}.{ZONE}."


def _records(backends: tuple[str, ...]) -> list[list]:
    out = []
    for b in backends:
        host, _, port = b.rpartition(":")
        out.append([int(port), target(host)])
    return out


def node_backends(app: AppRoute) -> tuple[str, ...]:
    """Where the node server sends `app`'s requests: its instances here while any serves."""
    return app.local or app.backends


def hop_backends(app: AppRoute) -> tuple[str, ...]:
    """What the hop server serves of `app`: its instances here, the leaving ones included."""
    return app.local + tuple(b for b in app.retiring if b not in app.local)


def answers(routes: NodeRoutes) -> dict:
    """The SRV records of every app's two names (see the module's docstring)."""
    srv: dict[str, list[list]] = {}
    for name, app in routes.apps:
        for server, backends in ((NODE, node_backends(app)), (HOP, hop_backends(app))):
            if backends:
                srv[f"{name}.{server}"] = _records(backends)
    return {"srv": srv}
