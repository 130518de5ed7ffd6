"""etcd auth (vcapp/state/etcdauth.py) on a real etcd started with the node daemon's TLS and auth
flags: a certificate alone reads nothing, a machine's user reads and writes /vc/ and nothing
else, root administers, and a removed machine's user is refused at once."""

from __future__ import annotations

import contextlib
import subprocess
import time

import pytest
import requests
from etcd3gw.exceptions import Etcd3Exception

from tests.api.conftest import free_port
from tests.control.test_etcd_tls import CLUSTER_KEY, START_TIMEOUT, machine_certs, tls_etcd_process
from vcapp import etcdtls
from vcapp.errors import BadRequest
from vcapp.node import etcd
from vcapp.state import etcdauth, membership
from vcapp.state.store import Store, error_text, wait_healthy

SHORT_TTL_S = 2  # so a test sees a token expire


@pytest.fixture
def auth_etcd(tmp_path):
    """etcd on 127.0.0.1 with TLS and auth on (tokens of SHORT_TTL_S), set up as `cluster
    init` does for machine m1. Yields (url, tls paths of m1, base dir of m1)."""
    with auth_etcd_process(tmp_path, "--auth-token-ttl", str(SHORT_TTL_S)) as found:  # the last one given wins
        yield found


@contextlib.contextmanager
def auth_etcd_process(tmp_path, *extra: str):
    """etcd with the node daemon's TLS and auth flags (plus `extra`), set up as `cluster init`
    does for machine m1; yields (url, tls paths of m1, base dir of m1)."""
    with tls_etcd_process(tmp_path, *etcd.auth_flags(), *extra) as (url, tls, base):
        founder = Store([url], tls=tls)
        wait_healthy(founder, START_TIMEOUT)
        assert founder.auth is None  # no login file yet: auth is still off
        etcdauth.save(tls.auth, etcdauth.machine(CLUSTER_KEY, "m1"))
        etcdauth.enable(founder, CLUSTER_KEY, "m1")
        yield url, tls, base


def as_root(url: str, tls: etcdtls.Paths) -> Store:
    return Store([url], tls=tls, auth=etcdauth.root(CLUSTER_KEY))


def refusal(call) -> str:
    with pytest.raises(Etcd3Exception) as e:
        call()
    return error_text(e.value)


def test_the_machines_login_reads_and_writes_under_vc(auth_etcd):
    url, tls, _ = auth_etcd
    store = Store([url], tls=tls)  # the login beside the certificate
    assert store.auth == etcdauth.machine(CLUSTER_KEY, "m1")
    store.put("/vc/probe", {"ok": 1})
    assert store.value("/vc/probe") == {"ok": 1}
    lease = store.grant(5)
    store.put("/vc/alive/m1", {}, lease=lease)
    assert store.keepalive(lease) > 0
    store.revoke(lease)
    assert store.revision() > 0 and store.healthy()


def test_a_cluster_certificate_without_a_login_reads_nothing(auth_etcd):
    url, tls, _ = auth_etcd
    as_root(url, tls).put("/vc/tokens/admin/x", {"hash": "h"})
    resp = requests.post(f"{url}/v3/kv/range", json={"key": "L3ZjL3Rva2Vucy9hZG1pbi94"},  # /vc/tokens/admin/x
                         verify=str(tls.ca), cert=(str(tls.cert), str(tls.key)), timeout=5)
    assert resp.status_code >= 400 and "user name is empty" in resp.text and "kvs" not in resp.text
    no_login = etcdtls.Paths(tls.ca, tls.cert, tls.key, tls.crl)
    assert "user name is empty" in refusal(lambda: Store([url], tls=no_login).get("/vc/tokens/admin/x"))
    wrong = etcdauth.Credentials("m1", "guessed")
    assert "authentication failed" in refusal(lambda: Store([url], tls=tls, auth=wrong).get("/vc/tokens/admin/x"))
    grpc = subprocess.run(["etcdctl", "--endpoints", url, *no_login.etcdctl_flags(), "get", "/vc/tokens/admin/x"],
                          capture_output=True, text=True, timeout=30)
    assert grpc.returncode != 0 and "permission denied" in grpc.stderr and not grpc.stdout


def test_a_machine_cannot_leave_vc_nor_change_auth_users_or_members(auth_etcd):
    url, tls, _ = auth_etcd
    store = Store([url], tls=tls)
    denied = "permission denied"
    assert denied in refusal(lambda: store.put("/elsewhere", 1))
    assert denied in refusal(lambda: store.call("/auth/disable", {}))
    assert denied in refusal(lambda: store.call("/auth/user/add", {"name": "eve", "password": "x"}))
    assert denied in refusal(lambda: store.call("/auth/role/grant", {"name": etcdauth.MACHINE_ROLE, "perm": {
        "permType": "READWRITE", "key": "AA==", "range_end": "AA=="}}))
    assert denied in refusal(lambda: store.call("/auth/user/grant", {"user": "m1", "role": "root"}))
    assert denied in refusal(lambda: store.member_add(f"https://127.0.0.1:{free_port()}"))
    assert denied in refusal(lambda: etcdauth.add_machine(store, CLUSTER_KEY, "m2"))
    assert len(store.members()) == 1  # listing is open to every logged-in client


def test_root_administers_users_and_members(auth_etcd):
    url, tls, _ = auth_etcd
    root = as_root(url, tls)
    root.put("/elsewhere", 1)
    member, members = root.member_add(f"https://127.0.0.1:{free_port()}", learner=True)
    assert len(members) == 2 and member.is_learner
    root.member_remove(member.id)
    etcdauth.add_machine(root, CLUSTER_KEY, "m2")
    etcdauth.add_machine(root, CLUSTER_KEY, "m2")  # a retried join: the same, no error
    Store([url], tls=tls, auth=etcdauth.machine(CLUSTER_KEY, "m2")).put("/vc/probe/m2", 1)
    with pytest.raises(ValueError, match="administrator"):
        etcdauth.machine(CLUSTER_KEY, "root")
    with pytest.raises(BadRequest, match="etcd's administrator"):
        membership.validate_node_name("root")  # refused before a join or an init gets anywhere


def test_a_removed_machines_user_is_refused_at_once(auth_etcd, tmp_path):
    url, tls, _ = auth_etcd
    root = as_root(url, tls)
    etcdauth.add_machine(root, CLUSTER_KEY, "m2")
    m2 = machine_certs(tmp_path / "m2", CLUSTER_KEY, "m2", "127.0.0.1", tls.ca.read_bytes())
    as_m2 = Store([url], tls=m2, auth=etcdauth.machine(CLUSTER_KEY, "m2"))
    as_m2.put("/vc/probe/m2", "still a member")  # logged in, holds a token
    etcdauth.remove_machine(root, "m2")
    etcdauth.remove_machine(root, "m2")  # twice: nothing left to remove, no error
    assert "authentication failed" in refusal(lambda: as_m2.get("/vc/probe/m2"))  # token gone, login refused
    Store([url], tls=tls).put("/vc/probe/m1", "unaffected")


def test_an_expired_token_is_renewed_by_logging_in_again(auth_etcd):
    url, tls, _ = auth_etcd
    store = Store([url], tls=tls)
    store.put("/vc/probe", 1)
    token = store._clients[0].session.headers["Authorization"]
    time.sleep(SHORT_TTL_S + 1.5)
    assert store.value("/vc/probe") == 1
    assert store._clients[0].session.headers["Authorization"] != token


def test_etcdctl_flags_carry_the_machines_login(auth_etcd):
    url, tls, _ = auth_etcd
    out = subprocess.run(["etcdctl", "--endpoints", url, *tls.etcdctl_flags(), "put", "/vc/probe/ctl", "1"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
