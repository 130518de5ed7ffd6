"""Machines: joining (with a join token), listing, removing, and the cluster's status."""

from __future__ import annotations

import base64
import hashlib
import time

from flask import Blueprint, g, jsonify

from mesh import auth as mesh_auth
from vcapp import etcdtls, joinbox, machine
from vcapp.api import context
from vcapp.api.auth import public
from vcapp.api.body import json_body
from vcapp.errors import BadRequest, Unavailable
from vcapp.state import etcdauth, keys, membership, volumes
from vcapp.state.etcd_members import remove_member_of
from vcapp.state.store import Store, StoreUnavailable

bp = Blueprint("nodes", __name__)

CLUSTER_FIELDS = ("name", "id", "domain", "edge")


def public_cluster(record: dict) -> dict:
    return {k: record.get(k) for k in CLUSTER_FIELDS}


@bp.post("/v1/join")
@public
def join():
    """Admit a machine to the cluster.

    Body: a sealed request (vcapp/joinbox.py: {"key", "box"}) holding
    {"token": "<join token>", "node": {name, site, addr, api_url, labels, resources, version}}.
    The request also carries "csr", the CSR of the etcd key the machine made for itself; the
    answer carries "etcd_tls": {ca, cert}, its etcd certificate from the cluster CA.
    Authorized by the join token, not an admin token. Answers 201 {"box"}, sealed to the
    joining machine: the cluster, the etcd client URLs it should use, the cluster key and its
    mesh credential. Nothing secret crosses the wire in clear, whoever relays the join.
    """
    sealed = json_body()
    key = cluster_key()  # before admitting: a join this machine cannot complete leaves no trace
    if "token" in sealed or not {"key", "box"} <= set(sealed):
        raise BadRequest("this join is not sealed (vcapp/joinbox.py: {key, box}); join with `vcapp node join`, "
                         "and if the machine's vcapp is older than the cluster's, install the cluster's version")
    try:
        opened = joinbox.open_request(base64.b64decode(key), sealed)
    except joinbox.SealError as e:
        raise BadRequest(f"join request: {e}; check that the join token is this cluster's "
                         "(`vcapp tokens join create` makes one)") from None
    body = opened.request
    token = body.get("token")
    if not isinstance(token, str) or not token:
        raise BadRequest("token: give the join token (`vcapp tokens join create` prints one)")
    info = membership.NodeInfo.from_json(body.get("node"))
    store = context.store()
    csr, ca_pem = etcd_csr(body.get("csr"), store, key)  # checked before admitting, like the key
    # One join request, however often it arrives: its CSR's key is made afresh for each join.
    join_id = hashlib.sha256(body["csr"].encode()).hexdigest()[:32]
    cluster = membership.admit_node(store, token, info, join_id)
    endpoints = [url for m in store.members() if not m.is_learner for url in m.client_urls]
    node = store.value(keys.node(info.name))
    answer = dict(cluster=public_cluster(cluster), node=node, endpoints=endpoints, cluster_key=key)
    cert = etcdtls.sign(ca_pem, base64.b64decode(key), csr.public_key(), node["name"], node["addr"])
    membership.record_etcd_cert(store, node["name"], node["addr"], etcdtls.serial(cert))
    # its etcd user, before it starts; the machine derives the same password from the key
    etcdauth.add_machine(store.with_auth(etcdauth.root(base64.b64decode(key))), base64.b64decode(key), node["name"])
    answer["etcd_tls"] = {"ca": ca_pem.decode(), "cert": cert.decode()}
    if cluster.get("mesh_coord"):
        mesh_key = machine.derive(base64.b64decode(key), "mesh")
        answer["mesh"] = {"ip": node["addr"], "coord_url": cluster["mesh_coord"],
                          "credential": mesh_auth.issue_credential(mesh_key, node["name"], node["addr"])}
    return jsonify(opened.seal_answer(answer)), 201


def etcd_csr(text: object, store: Store, key: str):
    """The joining machine's CSR, checked, and the cluster's etcd CA certificate, which must
    be the CA of this machine's cluster key (else this machine cannot sign: 503)."""
    try:
        csr = etcdtls.check_csr(text)
    except etcdtls.TLSError as e:
        raise BadRequest(f"{e}; `vcapp node join` sends one (is this machine's vcapp older than the cluster's?)") from None
    ca_pem = membership.etcd_ca(store)
    try:
        etcdtls.check_ca(ca_pem, base64.b64decode(key))
    except etcdtls.TLSError as e:
        raise Unavailable(f"{e}; send the join to another cluster machine") from None
    return csr, ca_pem


def cluster_key() -> str:
    """The cluster key for a joining machine (app secrets, mesh credentials), base64.

    It travels only in the answer to a valid join, never through etcd.
    """
    read = context.config().cluster_key
    try:
        if read is None:
            raise OSError("no cluster key configured")
        return base64.b64encode(read()).decode()
    except OSError:
        raise Unavailable("this machine has no cluster key on its disk; send the join to another "
                          "cluster machine (the token lists them all)") from None


@bp.get("/v1/nodes")
def nodes():
    """List the machines with up/down, resources, site and when they were last seen."""
    return jsonify(nodes=membership.list_nodes(context.store()), now=time.time())


@bp.post("/v1/nodes/<name>/drain")
def drain(name: str):
    """Drain a machine: nothing new is placed there and every instance on it moves to another
    machine, the new one healthy before the old one stops (instances with volumes stop
    first: one writer). Storage replicas stay unless the body says {"storage": true}: then
    they move to other machines too (409 when the others cannot hold every copy)."""
    storage = json_body(required=False).get("storage", False)
    if not isinstance(storage, bool):
        raise BadRequest(f'"storage" must be true or false, not {storage!r}')
    store, who = context.store(), g.get("admin") or "admin"
    return jsonify(volumes.drain_storage(store, name, who) if storage else membership.drain(store, name, who))


@bp.post("/v1/nodes/<name>/undrain")
def undrain(name: str):
    """A drained machine takes instances again (nothing moves back by itself)."""
    return jsonify(membership.drain(context.store(), name, g.get("admin") or "admin", drained=False))


@bp.delete("/v1/nodes/<name>")
def remove(name: str):
    """Remove a machine from the cluster (and its etcd member, if it runs one).

    Its etcd user goes too: its tokens stop working on every member at once, before the
    revocation list (vcapp/node/crl_loop.py) refuses its certificate's next connection."""
    store = context.store()
    record = membership.remove_node(store, name)
    root = store.with_auth(etcdauth.root(base64.b64decode(cluster_key())))
    etcdauth.remove_machine(root, name)
    member_removed = remove_etcd_member(root, name)
    return jsonify(removed=name, node=record, etcd_member_removed=member_removed is True,
                   etcd_member_pending=member_removed is PENDING)


PENDING = object()  # the member is still there; the controller removes it (etcd_members.plan_members)
# etcd refuses a membership change while its members have not all been connected for ~5 s
# (503 "unhealthy cluster" from every member, e.g. just after a cold start); past this wait
# the removal is left to the controller, which removes the member of a machine that is gone.
MEMBER_REMOVE_WAIT_S = 12.0
MEMBER_REMOVE_RETRY_S = 1.0


def remove_etcd_member(store: Store, name: str):
    """Drop the machine's etcd member: True, False (it had none) or PENDING (etcd refused for now)."""
    deadline = time.monotonic() + MEMBER_REMOVE_WAIT_S
    while True:
        try:
            return remove_member_of(store, name)
        except StoreUnavailable:
            if time.monotonic() >= deadline:
                return PENDING
            time.sleep(MEMBER_REMOVE_RETRY_S)


@bp.get("/v1/status")
def status():
    """The cluster at a glance: its record, every machine with up/down and resources, counts."""
    store = context.store()
    cluster = membership.cluster_record(store)
    machines = membership.list_nodes(store)
    return jsonify(cluster=public_cluster(cluster) | {"max_nodes": cluster.get("max_nodes")},
                   nodes=machines, summary=summary(machines), storage=storage_summary(store),
                   served_by=context.config().node,
                   admin=g.get("admin"), now=time.time())


def storage_summary(store) -> dict:
    """App data: off (no volume yet), starting, healthy (3 copies) or degraded (2), the volume
    count, the machines the copy count counts as up, why the controller's last pass failed (if
    it did), and the storage drains: machines whose copies moved off, and volumes still moving."""
    state = store.value(keys.STORAGE_STATE) or {}
    enabled = store.get(keys.STORAGE_ENABLED) is not None
    return {"state": state.get("state") or ("starting" if enabled else "off"),
            "volumes": store.count(keys.VOLUMES), "replication": state.get("code"),
            "counted": state.get("counted") or [], "error": state.get("error"),
            "evacuated": state.get("evacuated") or [], "evacuating": state.get("evacuating") or {}}


def summary(machines: list[dict]) -> dict:
    """Counts a person checks first: machines up and down, per site, and total capacity."""
    up = [m for m in machines if m.get("up")]
    sites: dict[str, dict] = {}
    for m in machines:
        site = sites.setdefault(m.get("site", "?"), {"up": 0, "down": 0})
        site["up" if m.get("up") else "down"] += 1
    return {
        "nodes": len(machines), "up": len(up), "down": len(machines) - len(up), "sites": sites,
        "cpus": sum(m.get("cpus", 0) for m in up),
        "memory_mb": sum(m.get("memory_mb", 0) for m in up),
        "free_memory_mb": sum(m.get("free_memory_mb", 0) for m in up),
        "disk_mb": sum(m.get("disk_mb", 0) for m in up),
        "free_disk_mb": sum(m.get("free_disk_mb", 0) for m in up),
    }
