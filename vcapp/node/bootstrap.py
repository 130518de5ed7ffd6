"""Making this machine part of a cluster, or not: `cluster init`, `node join`, `node leave`.

Each either completes or puts the machine back as it was (no node.json, no etcd data, no
daemon), so a refused join or a failed init leaves nothing half-done behind.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

from mesh import auth as mesh_auth
from mesh.coord import PREFIX as MESH_PREFIX
from runtime.podman import PodmanDriver, PodmanError
from storage import mount, storaged
from vcapp import __version__, etcdtls, joinbox, tokens, version
from vcapp.errors import BadRequest, Conflict, Unavailable, VcError
from vcapp.machine import (EtcdRole, MeshRole, NodeConfig, cluster_key, cluster_key_path, config_path, data_dir, derive,
                           mesh_credential_path, run_dir, save_cluster_key)
from vcapp.node import daemon, etcd, resources, service
from vcapp.node.router_loop import kill_stale_caddy
from vcapp.state import etcd_members, etcdauth, keys, membership
from vcapp.state.store import Store, StoreUnavailable, wait_healthy

START_TIMEOUT = 60.0  # s: etcd's first start plus the daemon's; seconds normally, slow disks more
ALIVE_POLL_TIMEOUT = 1.0  # s: one read of the alive key while a join waits for it
# s: a join is answered in well under a second when idle and in many on a loaded machine; an
# edge relaying it waits up to 30 s (mesh/joinproxy.py ANSWER_TIMEOUT), so wait longer than
# that. A retry of the same join is answered again (membership.admit_node), never refused.
JOIN_HTTP_TIMEOUT = 40.0
JOIN_PATIENCE = 60.0  # s: an edge or API that is restarting is back within this
JOIN_RETRY_EVERY = 1.0
STOP_TIMEOUT = 10.0
DEFAULT_MESH_INTERFACE = "vcmesh0"


def default_addr() -> str:
    """The machine's address on its default route's interface (its cluster address until the
    mesh gives it one)."""
    route = subprocess.run(["ip", "-4", "-o", "route", "show", "default"], capture_output=True, text=True).stdout.split()
    if "dev" not in route:
        raise BadRequest("cannot tell this machine's cluster address (no default route); pass --addr")
    dev = route[route.index("dev") + 1]
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", dev, "scope", "global"],
                         capture_output=True, text=True).stdout.split()
    if "inet" not in out:
        raise BadRequest(f"interface {dev} has no IPv4 address; pass --addr")
    return out[out.index("inet") + 1].split("/")[0]


def default_name() -> str:
    return socket.gethostname().split(".")[0].lower()


def _refuse_if_member() -> None:
    cfg = NodeConfig.load()
    if cfg is not None:
        raise Conflict(f"this machine already belongs to cluster {cfg.cluster!r} as {cfg.name!r}; "
                       "run `vcapp node leave` first")
    if etcd.has_data(data_dir()):
        raise Conflict(f"{etcd.data_dir(data_dir())} holds etcd data of an earlier cluster; "
                       "remove it if that cluster is gone for good")


def ensure_daemon() -> None:
    """Start the node daemon unless it is already running: as the systemd unit where systemd
    runs the machine (it then comes back after a reboot or a crash), else in the background."""
    running = daemon.running_pid()
    if service.systemd_runs_this_machine() and (service.installed() or not running):
        unit_call("start", service.install_and_start)
        return
    if running:  # a daemon started by hand or before the unit existed keeps running
        return
    spawn_daemon(service.boot_argv())


def unit_call(verb: str, call) -> None:
    """`call()` on the node unit; a refusal is Unavailable saying where systemd tells why."""
    try:
        call()
    except (OSError, subprocess.SubprocessError, service.ServiceError) as e:
        raise Unavailable(f"could not {verb} {service.UNIT_NAME}: {e}; `journalctl -u {service.UNIT_NAME}` "
                          "says why") from None


def spawn_daemon(argv: list[str]) -> Path:
    """Start the node daemon as a detached child logging to node.log; the log's path."""
    log = data_dir() / "log" / "node.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:  # in /, as systemd would: `python -m vcapp` imports from its cwd first
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                         start_new_session=True, cwd="/")
    return log


def stop_daemon() -> None:
    if service.installed() and service.systemd_runs_this_machine():
        service.stop_and_remove()  # else systemd would start it again
        return
    pid = daemon.running_pid()
    if not pid:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while daemon.running_pid() and time.monotonic() < deadline:
        time.sleep(0.1)
    if daemon.running_pid():
        os.kill(pid, signal.SIGKILL)


def _forget_local_state() -> None:
    stop_daemon()
    # The node router outlives a daemon restart (the next daemon replaces it), not a leave:
    # left running, it would keep answering the edge for the API this machine no longer runs.
    kill_stale_caddy(data_dir() / "router")
    _stop_workloads()
    config_path().unlink(missing_ok=True)
    cluster_key_path().unlink(missing_ok=True)
    mesh_credential_path().unlink(missing_ok=True)
    etcdtls.forget(data_dir())
    shutil.rmtree(etcd.data_dir(data_dir()), ignore_errors=True)


def _stop_workloads() -> None:
    """End what outlives the daemon on purpose (a restart must not stop the apps) but not a
    leave: the apps' containers, their volumes' weed mounts, the storage processes. Left
    running, an instance would go on writing to a volume its app now mounts elsewhere."""
    for path in sorted((data_dir() / "volumes").glob("*/*")):
        mount.stop_mount(run_dir(), path.parent.name, path.name, path)
        mount.stop_every_mount(path)
    try:
        driver = PodmanDriver.from_env()
        for container in driver.list():
            driver.remove(container.name)
    except PodmanError as e:
        print(f"warning: the apps' containers here could not all be removed ({e}); "
              "`podman ps --filter label=vcapp.managed=true` lists them", file=sys.stderr)
    for name in storaged.observe(run_dir()):
        storaged.stop(run_dir(), name)


def _node_info(name: str, site: str, addr: str, api_url: str, labels: dict) -> membership.NodeInfo:
    return membership.NodeInfo(name=name, site=site, addr=addr, api_url=api_url, labels=labels,
                               resources=resources.measure(data_dir()), version=__version__,
                               build=version.build())


def coord_url(edge: str) -> str:
    """The edge's mesh coordination URL from what an admin types: host:port or a URL."""
    url = edge if "://" in edge else f"http://{edge}"
    return url.rstrip("/") if urlsplit(url).path not in ("", "/") else url.rstrip("/") + MESH_PREFIX


def mesh_interface() -> str:
    """WireGuard interface name; simulated machines share /var/run/wireguard and set their own."""
    return os.environ.get("VCAPP_MESH_INTERFACE", DEFAULT_MESH_INTERFACE)


def _save_credential(credential: str) -> None:
    path = mesh_credential_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(credential)


def init_cluster(*, name: str, domain: str, edge: str, node_name: str, site: str, addr: str,
                 labels: dict, max_nodes: int) -> tuple[dict, tokens.AdminToken, tokens.JoinToken]:
    """Found a cluster on this machine: first etcd member, founding records, first tokens.

    With an edge, the machine takes the first overlay address and all cluster traffic rides
    the mesh; without, the machines must reach each other directly (one LAN)."""
    _refuse_if_member()
    membership.validate_node_name(node_name)
    key = secrets.token_bytes(32)
    save_cluster_key(key)
    mesh = None
    if edge:
        addr = membership.next_mesh_ip(set())
        mesh = MeshRole(ip=addr, coord_url=coord_url(edge), interface=mesh_interface())
        _save_credential(mesh_auth.issue_credential(derive(key, "mesh"), node_name, addr))
    cfg = NodeConfig(cluster=name, name=node_name, site=site, addr=addr, labels=labels, mesh=mesh,
                     etcd=EtcdRole(member=True, state="new", initial_cluster=f"{node_name}=https://{addr}:2380"))
    cfg.endpoints = [cfg.etcd_client_url]
    try:
        ca_pem, serial = _first_etcd_cert(key, name, node_name, addr)
        cfg.save()  # a running node daemon starts etcd as soon as node.json exists: certificates first
        ensure_daemon()
        store = Store([cfg.etcd_client_url])
        wait_healthy(store, START_TIMEOUT)
        admin, join = membership.create_cluster(
            store, name=name, domain=domain, edge=edge, max_nodes=max_nodes, join_key=joinbox.cluster_public(key),
            mesh_coord=mesh.coord_url if mesh else "",
            first=_node_info(node_name, site, addr, cfg.api_url, labels))
        member = store.members()[0]
        store.put(keys.etcd_member(node_name), {"member_id": member.id, "peer_url": cfg.etcd_peer_url})
        store.put(keys.ETCD_CA, {"cert": ca_pem.decode()})
        membership.record_etcd_cert(store, node_name, addr, serial)
        etcdauth.enable(store, key, node_name)  # from here on, every client logs in
        return membership.cluster_record(store), admin, join
    except BaseException:
        _forget_local_state()
        raise


def _first_etcd_cert(key: bytes, cluster: str, name: str, addr: str) -> tuple[bytes, str]:
    """The cluster's etcd CA, and the founding machine's key and certificate signed here
    (there is nobody to send a CSR to yet), with an empty revocation list, and its etcd
    login (the user is made once etcd runs). Returns the CA certificate and the machine
    certificate's serial."""
    ca_pem = etcdtls.make_ca(key, cluster)
    machine_key = etcdtls.new_key()
    cert = etcdtls.sign(ca_pem, key, machine_key.public_key(), name, addr)
    etcdtls.save_machine(data_dir(), ca_pem, cert, machine_key)
    etcdtls.write_crl(data_dir(), key, [])
    etcdauth.save(etcdtls.paths(data_dir()).auth, etcdauth.machine(key, name))
    return ca_pem, etcdtls.serial(cert)


def request_join(token_text: str, info: membership.NodeInfo, csr: str) -> dict:
    """Ask the cluster (through the address in the token) to admit this machine.

    The request and its answer are sealed (vcapp/joinbox.py) to the cluster key pinned in the
    token, so the edge relaying the join, or anyone on the path, reads neither.
    Unreachable or "no machine answered" is retried for JOIN_PATIENCE: the edge or the
    cluster's machines may be (re)starting. A refusal is final."""
    try:
        token = tokens.parse_join_token(token_text)
    except tokens.TokenError as e:
        raise BadRequest(str(e)) from None
    if not token.join_key:
        raise BadRequest("this join token carries no cluster key to seal the join to (it predates sealed "
                         "joins); create a new one with `vcapp tokens join create`")
    sealed = joinbox.seal_request(token.join_key, {"token": token_text, "node": info.__dict__, "csr": csr})
    body = sealed.body
    deadline = time.monotonic() + JOIN_PATIENCE
    while True:
        problems = []
        for url in token.api_urls:
            try:
                resp = requests.post(f"{url}/v1/join", json=body, timeout=JOIN_HTTP_TIMEOUT)
            except requests.RequestException as e:
                problems.append(f"{url}: {type(e).__name__}")
                continue
            try:
                answer = resp.json()
            except ValueError:
                answer = {"error": resp.text[:200]}
            if resp.status_code == 503:
                problems.append(f"{url}: {answer.get('error', 'unavailable')}")
                continue
            if resp.status_code >= 400:
                raise VcError(answer.get("error", f"join refused ({resp.status_code})"), resp.status_code)
            try:
                return sealed.open_answer(answer)
            except joinbox.SealError as e:
                raise VcError(f"the answer from {url} is not the cluster's: {e}; "
                              "the path to the cluster may be tampered with", 502) from None
        if time.monotonic() > deadline:
            raise Unavailable("cannot reach the cluster at " + "; ".join(problems) +
                              ": is a cluster machine up, and is this machine on the cluster network?")
        time.sleep(JOIN_RETRY_EVERY)


def join_cluster(token_text: str, *, node_name: str, site: str, addr: str, labels: dict) -> dict:
    _refuse_if_member()
    info = _node_info(node_name, site, addr, f"http://{addr}:7180", labels)
    etcd_key = etcdtls.new_key()  # made here, never sent: the join carries its CSR
    answer = request_join(token_text, info, etcdtls.make_csr(etcd_key, node_name))
    mesh = None
    if answer.get("mesh"):
        addr = answer["mesh"]["ip"]
        mesh = MeshRole(ip=addr, coord_url=answer["mesh"]["coord_url"], interface=mesh_interface())
        _save_credential(answer["mesh"]["credential"])
    cfg = NodeConfig(cluster=answer["cluster"]["name"], name=node_name, site=site, addr=addr, labels=labels,
                     endpoints=list(answer["endpoints"]), mesh=mesh)
    save_cluster_key(base64.b64decode(answer["cluster_key"]))
    etcdtls.save_machine(data_dir(), answer["etcd_tls"]["ca"].encode(), answer["etcd_tls"]["cert"].encode(), etcd_key)
    etcdtls.write_crl(data_dir(), cluster_key(), [])  # filled by the node daemon (crl_loop)
    # the admitting machine made the user with this same password: it never travelled
    etcdauth.save(etcdtls.paths(data_dir()).auth, etcdauth.machine(cluster_key(), node_name))
    cfg.save()
    ensure_daemon()
    # Short requests: the first ones go out before the mesh has a path to the cluster's etcd,
    # and one that waits out the store's usual timeout held every join 4 s longer.
    _wait_alive(Store(cfg.endpoints, timeout=ALIVE_POLL_TIMEOUT), node_name)
    return answer


def _wait_alive(store: Store, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if store.get(keys.alive(name)):
                return
        except StoreUnavailable:
            pass
        time.sleep(0.2)
    raise Unavailable(f"joined, but {name} did not report alive within {START_TIMEOUT:.0f}s; "
                      f"see {data_dir() / 'log' / 'node.log'}")


def leave_cluster() -> str:
    cfg = NodeConfig.load()
    if cfg is None:
        raise BadRequest("this machine is not in a cluster")
    store = Store(cfg.store_endpoints())
    if cfg.etcd.member:
        voters = [m for m in store.members() if not m.is_learner]
        if len(voters) == 1 and voters[0].name == cfg.name:
            raise Conflict("this machine holds the cluster's only etcd voter: leaving would destroy the "
                           "cluster's state. Add machines first, or tear the cluster down on purpose.")
        etcd_members.remove_member_of(store, cfg.name)
    membership.remove_node(store, cfg.name)
    etcdauth.remove_machine(store.as_root(), cfg.name)
    _forget_local_state()
    return cfg.cluster

