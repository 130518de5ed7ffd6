"""Route switches: a machine stops an app's container only after every router has stopped
sending to it.

A runtime that retires a container (a new release took over, the instance left the machine)
first writes the instance's new status (the new container, or none), then asks for a switch
(`ask`: /vc/routes/switch/<node>/<app>/<inst>); the key's mod revision is the request. Each
node router, on its tick, reads the open requests *before* it reads the cluster state its
routes come from, so routes computed after that read reflect the new status; once its Caddy
routes by exactly those routes (their answers written and Caddy's cached ones expired:
router/node.py `settled`) it acknowledges the newest request it saw (`acknowledge`:
/vc/routes/applied/<node>). `wait` returns when every live machine's router (but those confirmed
unreachable) has acknowledged the request, or after `SWITCH_TIMEOUT_S` with the routers that did
not (a stuck or cut-off router must not hold a deploy forever; the drain that follows still
covers requests already sent). Acknowledgements are written only while a request is open, so an
idle cluster writes nothing. Only this module reads or writes these keys.

A container leaving its machine (`ask` with `host_port`) keeps serving the other routers that
still send to it: until its request closes, its machine's router keeps it among the app's
instances on its hop server (`retiring`), although its report is gone. The runtime puts the
request once before the report changes and once after (the revision it waits for); the router
reads the requests after the cluster state, so routes that lack the report have the port.
"""

from __future__ import annotations

import time

from vcapp.state import keys, peerwatch
from vcapp.state.store import Store

# A router acknowledges on its first tick once the new routes are in force (a second after
# their answers are written): ~1.5 s on an idle machine, a few under load. Past this a router
# is taken to be stuck or cut off.
SWITCH_TIMEOUT_S = 10.0
POLL_S = 0.1


def ask(store: Store, node: str, app: str, instance: str, lease: int, host_port: int | None = None) -> int:
    """Open a switch request for `app/instance` on `node`; its revision (what routers acknowledge).
    `host_port`: the old container's, when the instance leaves `node` (see `retiring`)."""
    value = {"at": time.time(), **({"host_port": host_port} if host_port else {})}
    return store.put(keys.route_switch(node, app, instance), value, lease=lease)


def retiring(store: Store, node: str) -> dict[str, tuple[int, ...]]:
    """App -> host ports of its containers leaving `node` whose switch is still open."""
    out: dict[str, set[int]] = {}
    for e in store.list(keys.ROUTE_SWITCHES + node + "/"):
        app, _, _ = keys.name_of(e.key, keys.ROUTE_SWITCHES + node + "/").partition("/")
        port = e.value.get("host_port") if isinstance(e.value, dict) else None
        if app and type(port) is int and 0 < port < 65536:
            out.setdefault(app, set()).add(port)
    return {app: tuple(sorted(ports)) for app, ports in out.items()}


def close(store: Store, node: str, app: str, instance: str) -> None:
    store.delete(keys.route_switch(node, app, instance))


def newest_request(store: Store) -> int:
    """The revision of the newest open switch request (0: none is open)."""
    return max((e.mod_revision for e in store.list(keys.ROUTE_SWITCHES)), default=0)


def acknowledge(store: Store, node: str, revision: int, lease: int) -> None:
    """`node`'s router runs routes computed after it saw request `revision`."""
    store.put(keys.routes_applied(node), {"revision": revision, "at": time.time()}, lease=lease)


def acknowledged(store: Store) -> dict[str, int]:
    """Machine -> the newest request its router acknowledged."""
    out = {}
    for e in store.list(keys.ROUTES_APPLIED):
        if isinstance(e.value, dict) and isinstance(e.value.get("revision"), int):
            out[keys.name_of(e.key, keys.ROUTES_APPLIED)] = e.value["revision"]
    return out


def lagging(store: Store, revision: int) -> list[str]:
    """The live machines whose router has not acknowledged request `revision` yet; not those the
    others confirm unreachable (vcapp/state/peerwatch.py). Cut off, such a router cannot answer,
    and no router or edge sends to that machine any more: waited for until its lease ran out, it
    held every handoff of a black-holed machine's failover by seconds (bench/failover_bench.py:
    the moved instance healthy only just after the lost machine's lease ended)."""
    acks = acknowledged(store)
    return sorted(n for n in peerwatch.reachable(store) if acks.get(n, 0) < revision)


def wait(store: Store, revision: int, timeout: float = SWITCH_TIMEOUT_S) -> list[str]:
    """Wait until every live router acknowledged `revision`; the routers that had not by
    `timeout` (empty: all switched)."""
    deadline = time.monotonic() + timeout
    while (late := lagging(store, revision)) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    return late
