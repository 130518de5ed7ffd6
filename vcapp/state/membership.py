"""Who belongs to the cluster: its founding record, join and admin tokens, admitting and
removing machines.

Every change is one etcd transaction that checks what it read is still true, so two joins
racing for the 10th place, or for the last use of a token, cannot both win, and a refused
join leaves no trace.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from vcapp import tokens
from vcapp.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized, Unavailable
from vcapp.state import etcdauth, events, keys
from vcapp.state.store import Store, absent, delete_op, put_op, unchanged

MAX_NODES = 10
# Overlay addresses: .1-.9 are for edges (the first edge is 100.96.0.1), machines from .10.
MESH_NET = ipaddress.IPv4Network("100.96.0.0/16")
FIRST_MACHINE_IP = 10
NODE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
CLUSTER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
REMOVE_ATTEMPTS = 5  # a removal races only the machine's own periodic refresh of its record
DEFAULT_JOIN_TTL = 3600  # a join token that lives forever is a door left open
# A join token admits one machine unless its creator asks for more (`--uses N`): a token
# copied from a terminal or a chat cannot bring in a second machine nobody meant to add.
DEFAULT_JOIN_USES = 1

# The admin token `cluster init` prints; pushes and events name a token by its name ("pushed by
# admin"). People get their own with `vcapp tokens admin create --name alice-laptop`.
FIRST_ADMIN_TOKEN = "admin"


@dataclass
class NodeInfo:
    """What a machine says about itself when it joins (and keeps current afterwards)."""

    name: str
    site: str
    addr: str
    api_url: str
    labels: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)
    version: str = ""
    build: str = ""  # vcapp/version.py; a machine of a release before builds sends none

    def record(self, now: float) -> dict:
        return {
            "name": self.name, "site": self.site, "addr": self.addr, "api_url": self.api_url,
            "labels": self.labels, **self.resources, "version": self.version, "build": self.build,
            "joined_at": now,
        }

    @classmethod
    def from_json(cls, data: dict) -> NodeInfo:
        if not isinstance(data, dict):
            raise BadRequest("node info must be a JSON object")
        missing = [k for k in ("name", "site", "addr", "api_url") if not data.get(k)]
        if missing:
            raise BadRequest(f"node info lacks {', '.join(missing)}")
        return cls(
            name=str(data["name"]), site=str(data["site"]), addr=str(data["addr"]),
            api_url=str(data["api_url"]), labels=dict(data.get("labels") or {}),
            resources=dict(data.get("resources") or {}), version=str(data.get("version", "")),
            build=str(data.get("build", "")),
        )


def next_mesh_ip(used: set[str]) -> str:
    """The lowest free machine address on the overlay. Pure."""
    for host in range(FIRST_MACHINE_IP, MESH_NET.num_addresses - 1):
        ip = str(MESH_NET.network_address + host)
        if ip not in used:
            return ip
    raise Conflict("the overlay has no free address left")


def validate_node_name(name: str) -> None:
    if not NODE_NAME.fullmatch(name):  # whole: `$` would pass a final newline
        raise BadRequest(f"machine name {name!r}: use lowercase letters, digits and '-', "
                         "starting with a letter (at most 31)")
    if name in etcdauth.RESERVED_NAMES:
        raise BadRequest(f"machine name {name!r} is taken by etcd's administrator; choose another")


# ---- the cluster record ------------------------------------------------------------------

def alive_machines(store: Store) -> set[str]:
    """The machines whose liveness lease is current (/vc/alive/<name>, vcapp/node/lease.py)."""
    return {keys.name_of(e.key, keys.ALIVE) for e in store.list(keys.ALIVE)}


def node_records(store: Store) -> dict[str, dict]:
    """Every machine's record (/vc/nodes/<name>), by name: site, addr, api_url, labels, resources."""
    return {keys.name_of(e.key, keys.NODES): e.value for e in store.list(keys.NODES) if isinstance(e.value, dict)}


def node_states(store: Store) -> dict[str, dict]:
    """Each machine's last up/down transition (/vc/nodestate/<name>: {state, since}), by name."""
    return {keys.name_of(e.key, keys.NODESTATE): e.value for e in store.list(keys.NODESTATE)
            if isinstance(e.value, dict)}


def api_addr(record: dict) -> str | None:
    """"host:port" of a node record's admin API, or None."""
    parts = urlsplit(record.get("api_url") or "")
    return f"{parts.hostname}:{parts.port}" if parts.hostname and parts.port else None


def cluster_record(store: Store) -> dict:
    record = store.value(keys.CLUSTER)
    if record is None:
        raise NotFound("this etcd holds no vcapp cluster; create one with `vcapp cluster init`")
    return record


def create_cluster(store: Store, *, name: str, domain: str, edge: str, first: NodeInfo, join_key: str,
                   max_nodes: int = MAX_NODES, mesh_coord: str = "") -> tuple[tokens.AdminToken, tokens.JoinToken]:
    """Write the founding records; returns the first admin token and the first join token.

    `join_key` is the cluster's join public key (vcapp/joinbox.py cluster_public), which every
    join token carries so joins are sealed. The first join token admits the rest of the
    cluster (max_nodes - 1 machines) within its hour: the founder adds the machines at hand
    with it; later tokens admit one machine unless asked for more.
    With `mesh_coord` (the edge's coordination URL) machines join through the edge and talk
    over the WireGuard mesh; without it they must reach each other directly (one LAN)."""
    if not CLUSTER_NAME.fullmatch(name):
        raise BadRequest(f"cluster name {name!r}: use lowercase letters, digits and '-'")
    validate_node_name(first.name)
    if not 1 <= max_nodes <= MAX_NODES:
        raise BadRequest(f"--max-nodes must be between 1 and {MAX_NODES}")
    now = time.time()
    admin = tokens.new_admin_token()
    join = tokens.new_join_token(name, [mesh_coord or first.api_url], join_key)
    cluster = {"name": name, "id": secrets.token_hex(8), "domain": domain, "edge": edge,
               "max_nodes": max_nodes, "created_at": now, "mesh_coord": mesh_coord, "join_key": join_key}
    ok = store.txn(
        [absent(keys.CLUSTER)],
        [
            put_op(keys.CLUSTER, cluster),
            put_op(keys.node(first.name), first.record(now)),
            put_op(keys.NODES_VERSION, {"at": now}),
            put_op(keys.admin_token(admin.id), _admin_record(FIRST_ADMIN_TOKEN, admin, now)),
            put_op(keys.join_token(join.id), _join_record("initial", join, now, DEFAULT_JOIN_TTL, max(max_nodes - 1, 1))),
        ],
    )
    if not ok:
        raise Conflict(f"a cluster already lives in this etcd ({cluster_record(store)['name']})")
    events.record(store, "cluster.created", f"cluster {name} created on {first.name}", node=first.name)
    return admin, join


# ---- admin tokens ------------------------------------------------------------------------

# What an admin token may do. "edge": only read the routes table an edge serves and report
# its certificates' status (the views marked @for_edges), so a compromised edge host cannot
# change the cluster or read code.
SCOPES = {"admin": "use the whole admin API and git",
          "edge": "read the edge's routes table (GET /v1/ingress), report its certificates"}


def _admin_record(name: str, token: tokens.AdminToken, now: float, scope: str = "admin") -> dict:
    return {"name": name, "hash": tokens.hash_secret(token.secret), "created_at": now, "revoked": False,
            "scope": scope}


def create_admin_token(store: Store, name: str, scope: str = "admin") -> tokens.AdminToken:
    if not name or len(name) > 64:
        raise BadRequest("give the admin token a name of 1-64 characters (who or what holds it)")
    if scope not in SCOPES:
        raise BadRequest(f"scope: {scope!r} is not one of {', '.join(SCOPES)} "
                         f"({'; '.join(f'{k}: {v}' for k, v in SCOPES.items())})")
    token = tokens.new_admin_token()
    store.put(keys.admin_token(token.id), _admin_record(name, token, time.time(), scope))
    events.record(store, "token.admin.created", f"admin token {token.id} ({name}, {scope}) created")
    return token


def authenticate_admin(store: Store, text: str, allow: tuple[str, ...] = ("admin",)) -> str:
    """The name of the admin token `text` if its scope is in `allow`; else Unauthorized
    (unknown, revoked) or Forbidden (a narrower scope), with the reason."""
    try:
        token = tokens.parse_admin_token(text)
    except tokens.TokenError as e:
        raise Unauthorized(str(e)) from None
    record = store.value(keys.admin_token(token.id))
    if record is None or not tokens.secret_matches(token.secret, record["hash"]):
        raise Unauthorized("admin token not recognised; log in again with a valid one (`vcapp login URL`)")
    if record.get("revoked"):
        raise Unauthorized(f"admin token {token.id} ({record['name']}) was revoked; ask an admin for a new one")
    scope = record.get("scope", "admin")
    if scope not in allow:
        raise Forbidden(f"admin token {token.id} ({record['name']}) is an {scope} token: it may only "
                        f"{SCOPES.get(scope, 'nothing here')}; use a full admin token for this")
    return record["name"]


def list_admin_tokens(store: Store) -> list[dict]:
    return [_public(e.key, keys.ADMIN_TOKENS, e.value) for e in store.list(keys.ADMIN_TOKENS)]


def revoke_admin_token(store: Store, token_id: str) -> None:
    _revoke(store, keys.admin_token(token_id), f"admin token {token_id}")
    events.record(store, "token.admin.revoked", f"admin token {token_id} revoked")


# ---- join tokens -------------------------------------------------------------------------

def _join_record(name: str, token: tokens.JoinToken, now: float, ttl: int, max_uses: int) -> dict:
    return {"name": name, "hash": tokens.hash_secret(token.secret), "created_at": now,
            "expires_at": now + ttl if ttl else None, "uses": 0, "max_uses": max_uses, "revoked": False}


def create_join_token(store: Store, *, name: str = "", ttl: int = DEFAULT_JOIN_TTL,
                      max_uses: int = DEFAULT_JOIN_USES) -> tokens.JoinToken:
    """max_uses 0 = any number of machines until it expires; ttl 0 = never expires."""
    if ttl < 0 or max_uses < 0:
        raise BadRequest("expiry and uses must not be negative")
    cluster = cluster_record(store)
    api_urls = sorted({n.value["api_url"] for n in store.list(keys.NODES) if n.value.get("api_url")})
    if cluster.get("mesh_coord"):
        api_urls = [cluster["mesh_coord"]]  # a new machine reaches the cluster through the edge
    token = tokens.new_join_token(cluster["name"], api_urls, cluster.get("join_key", ""))
    store.put(keys.join_token(token.id), _join_record(name, token, time.time(), ttl, max_uses))
    events.record(store, "token.join.created", f"join token {token.id} created")
    return token


def list_join_tokens(store: Store) -> list[dict]:
    return [_public(e.key, keys.JOIN_TOKENS, e.value) for e in store.list(keys.JOIN_TOKENS)]


def revoke_join_token(store: Store, token_id: str) -> None:
    _revoke(store, keys.join_token(token_id), f"join token {token_id}")
    events.record(store, "token.join.revoked", f"join token {token_id} revoked")


def _revoke(store: Store, key: str, what: str) -> None:
    entry = store.get(key)
    if entry is None:
        raise NotFound(f"no {what}; list them to see the ids")
    store.put(key, dict(entry.value, revoked=True))


def _public(key: str, prefix: str, record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "hash"} | {"id": key[len(prefix):]}


def check_join_token(record: dict | None, token: tokens.JoinToken, now: float) -> None:
    """Raise Unauthorized with the precise reason a join token cannot be used. Pure."""
    if record is None or not tokens.secret_matches(token.secret, record["hash"]):
        raise Unauthorized("join token not recognised: it is wrong or from another cluster; "
                           "create one with `vcapp tokens join create`")
    if record.get("revoked"):
        raise Unauthorized(f"join token {token.id} was revoked; create a new one with `vcapp tokens join create`")
    if record.get("expires_at") and now >= record["expires_at"]:
        raise Unauthorized(f"join token {token.id} expired at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(record['expires_at']))}; "
                           "create a new one with `vcapp tokens join create`")
    if record.get("max_uses") and record.get("uses", 0) >= record["max_uses"]:
        raise Unauthorized(f"join token {token.id} is used up ({record['uses']} of {record['max_uses']} uses)")


# ---- admitting and removing machines -----------------------------------------------------

def revoked_mesh_ips(store: Store) -> list[str]:
    """Overlay addresses of removed machines, whose mesh credentials the edge refuses."""
    return sorted(e.key[len(keys.MESH_REVOKED):] for e in store.list(keys.MESH_REVOKED))


def admit_node(store: Store, token_text: str, node: NodeInfo, join_id: str = "") -> dict:
    """Check a join and record the machine, all or nothing. Returns the cluster record.

    join_id names one join request (the API derives it from the request's CSR). The same
    request again, after its answer was lost on the way (a relay that gave up waiting, a
    dropped connection), finds its machine admitted and is answered again instead of being
    refused as a second machine of that name; it uses no second use of the token."""
    try:
        token = tokens.parse_join_token(token_text)
    except tokens.TokenError as e:
        raise Unauthorized(str(e)) from None
    validate_node_name(node.name)
    cluster = cluster_record(store)
    if token.cluster != cluster["name"]:
        raise Unauthorized(f"this join token is for cluster {token.cluster!r}, not {cluster['name']!r}")
    now = time.time()
    records = {e.key[len(keys.NODES):]: e.value for e in store.list(keys.NODES)}
    if join_id and (records.get(node.name) or {}).get("join_id") == join_id:
        return cluster
    token_entry = store.get(keys.join_token(token.id))
    check_join_token(token_entry.value if token_entry else None, token, now)
    version = store.get(keys.NODES_VERSION)
    nodes = set(records)
    if node.name in nodes:
        raise Conflict(f"a machine named {node.name!r} is already in the cluster; "
                       "join with another name (--name) or remove the old one (`vcapp node remove`)")
    limit = min(cluster.get("max_nodes", MAX_NODES), MAX_NODES)
    if len(nodes) >= limit:
        raise Conflict(f"cluster is full: {limit} machines; remove one first (`vcapp node remove NAME`)")
    if cluster.get("mesh_coord"):  # its address on the overlay, unique under the version guard
        used = {r.get("addr", "") for r in records.values()} | set(revoked_mesh_ips(store))
        node.addr = next_mesh_ip(used)
        node.api_url = f"http://{node.addr}:{node.api_url.rsplit(':', 1)[-1]}"
    used = dict(token_entry.value, uses=token_entry.value.get("uses", 0) + 1)
    ok = store.txn(
        [unchanged(keys.join_token(token.id), token_entry.mod_revision),
         unchanged(keys.NODES_VERSION, version.mod_revision if version else 0),
         absent(keys.node(node.name))],
        [put_op(keys.node(node.name), dict(node.record(now), **({"join_id": join_id} if join_id else {}))),
         put_op(keys.join_token(token.id), used),
         put_op(keys.NODES_VERSION, {"at": now})],
    )
    if not ok:
        raise Conflict("the cluster changed while this machine was joining (another join or removal); "
                       "run the join again")
    events.record(store, "node.joined", f"{node.name} joined at site {node.site}", node=node.name)
    return cluster


def etcd_cert_revocation(store: Store, name: str, now: float) -> list[dict]:
    """Operations that move the machine's etcd certificate to the revocation list (every
    machine writes it into its etcd's CRL: vcapp/node/crl_loop.py), so a removed machine's key
    opens no new connection to etcd."""
    cert = store.value(keys.etcd_cert(name))
    if not cert:
        return []
    return [put_op(keys.etcd_revoked(cert["serial"]), {"name": name, "addr": cert.get("addr", ""), "at": now}),
            delete_op(keys.etcd_cert(name))]


def remove_node(store: Store, name: str) -> dict:
    """Forget a machine: its record, liveness and state. Returns the removed record.

    On a mesh cluster its overlay address is revoked in the same transaction: the edge learns
    it through GET /v1/ingress and refuses that address's mesh credential from then on, and
    admit_node never hands the address out again (so the old credential cannot come back)."""
    mesh = bool(cluster_record(store).get("mesh_coord"))
    for _ in range(REMOVE_ATTEMPTS):  # the machine's agent rewrites its record every few seconds
        entry = store.get(keys.node(name))
        if entry is None:
            raise NotFound(f"no machine named {name!r}; `vcapp nodes` lists them")
        revoke_cert = etcd_cert_revocation(store, name, time.time())
        now = time.time()
        revoke = ([put_op(keys.mesh_revoked(entry.value["addr"]), {"node": name, "at": now})]
                  if mesh and entry.value.get("addr") else [])
        if store.txn(
            [unchanged(keys.node(name), entry.mod_revision)],
            [*revoke_cert, delete_op(keys.node(name)), delete_op(keys.alive(name)), delete_op(keys.nodestate(name)),
             delete_op(keys.drained(name)),
             put_op(keys.NODES_VERSION, {"at": now}), *revoke],
        ):
            break
    else:
        raise Conflict(f"machine {name!r} kept changing while being removed; run the removal again")
    events.record(store, "node.removed", f"{name} removed from the cluster", node=name)
    return entry.value


def etcd_ca(store: Store) -> bytes:
    """The cluster's etcd CA certificate (PEM), made at `cluster init`."""
    record = store.value(keys.ETCD_CA)
    if not record:
        raise Unavailable("this cluster has no etcd CA certificate in etcd; it was made by an older vcapp "
                          "(`vcapp cluster init` writes one)")
    return record["cert"].encode()


def record_etcd_cert(store: Store, name: str, addr: str, serial: str) -> None:
    """Remember which certificate a machine was given, so its removal revokes it."""
    store.put(keys.etcd_cert(name), {"serial": serial, "addr": addr, "issued_at": time.time()})


def revoked_etcd_certs(store: Store) -> dict[str, dict]:
    """serial (hex) -> {name, addr, at} of every removed machine's etcd certificate."""
    return {keys.name_of(e.key, keys.ETCD_REVOKED): e.value for e in store.list(keys.ETCD_REVOKED)}


def drained_machines(store: Store) -> dict[str, dict]:
    """Machine -> {at, by, storage} of every drained machine (`vcapp node drain`); `storage`:
    its app data moves off too (vcapp/state/volumes.py)."""
    return {keys.name_of(e.key, keys.DRAINED): e.value if isinstance(e.value, dict) else {}
            for e in store.list(keys.DRAINED)}


def drain(store: Store, name: str, who: str, drained: bool = True, storage: bool = False) -> dict:
    """Mark machine `name` drained (the placer moves its instances off and places nothing
    there; with `storage`, its copies of app data move off too) or schedulable again.
    Answers {name, drained, storage, changed}. Whether the others have room for the data is
    the caller's check (volumes.drain_storage)."""
    if store.get(keys.node(name)) is None:
        raise NotFound(f"no machine named {name!r}; `vcapp nodes` lists them")
    was = store.value(keys.drained(name))
    was = was if isinstance(was, dict) else ({} if was is None else {"storage": False})
    storage = storage or bool(was.get("storage"))  # a second drain without --storage keeps it
    if drained and (not was or storage != bool(was.get("storage"))):
        store.put(keys.drained(name), {"at": was.get("at", time.time()), "by": who, "storage": storage})
        moves = "its instances and its copies of app data move" if storage else "its instances move"
        events.record(store, "node.drained", f"{name} drained by {who}: {moves} to other machines",
                      node=name, who=who, storage=storage)
        return {"name": name, "drained": True, "storage": storage, "changed": True}
    if not drained and was:
        store.delete(keys.drained(name))
        events.record(store, "node.undrained", f"{name} takes instances again ({who})", node=name, who=who)
        return {"name": name, "drained": False, "storage": False, "changed": True}
    return {"name": name, "drained": drained, "storage": drained and storage, "changed": False}


def list_nodes(store: Store) -> list[dict]:
    """Node records with `up` (lease alive), `drained` and `state_since` filled in."""
    alive = {e.key[len(keys.ALIVE):]: e.value for e in store.list(keys.ALIVE)}
    drained = drained_machines(store)
    states = node_states(store)
    result = []
    for entry in store.list(keys.NODES):
        name = entry.key[len(keys.NODES):]
        record = dict(entry.value)
        record["up"] = name in alive
        record["drained"] = name in drained
        record["storage_drained"] = bool((drained.get(name) or {}).get("storage"))
        record["last_seen"] = time.time() if record["up"] else (states.get(name) or {}).get("since")
        record["state_since"] = (states.get(name) or {}).get("since")
        result.append(record)
    return result
