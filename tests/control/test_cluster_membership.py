"""Issue 3 on a simulated cluster: init, joins, bad tokens, liveness, member replacement,
cold start. (Machines share one LAN until the mesh carries etcd across sites.)"""

import base64
import json
import subprocess
import time

import pytest

from tests.control.conftest import TEST_REPLACE_AFTER, ControlCluster
from vcapp import etcdtls
from vcapp.node.lease import LEASE_TTL
from vcapp.state import etcdauth

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cc(make_sim):
    sim = make_sim(home=4, office=0)
    cc = ControlCluster(sim, ["home-1", "home-2", "home-3", "home-4"])
    cc.boot_daemons()
    cc.init("home-1")
    cc.join("home-2")
    cc.join("home-3")
    return cc


def root_login(cc) -> list[str]:
    """etcdctl flags for etcd's root (vcapp/state/etcdauth.py), whose password the cluster key derives."""
    creds = etcdauth.root(base64.b64decode((cc.sim.dc.host_dir("home-1") / "data" / "keys" / "cluster.key").read_text()))
    return ["--user", creds.user, "--password", creds.password]


def all_voters(cc, n: int) -> dict | None:
    """The members if there are n of them and none is a learner."""
    v = voters(cc)
    return v if len(v) == n and not any(v.values()) else None


def voters(cc, machine="home-1") -> dict:
    out = cc.etcd(machine, "member", "list", "-w", "json", check=False)
    if out.returncode != 0:  # no quorum for a moment (a member being swapped): ask again
        return {}
    table = json.loads(out.stdout)
    return {m.get("name", ""): m.get("isLearner", False) for m in table["members"]}


def test_init_and_joins_give_three_machines_up_and_three_etcd_voters(cc):
    nodes = cc.nodes("home-1")
    assert set(nodes) == {"home-1", "home-2", "home-3"}
    assert all(n["up"] and n["site"] == "home" and n["cpus"] >= 1 and n["memory_mb"] > 0 for n in nodes.values())
    members = cc.wait(lambda: all_voters(cc, 3), 30, "three etcd voters")
    assert set(members) == {"home-1", "home-2", "home-3"}
    health = cc.etcd("home-1", "endpoint", "health", "--cluster", check=False)
    assert (health.stdout + health.stderr).count("is healthy") == 3, health.stdout + health.stderr
    kinds = [e["kind"] for e in json.loads(cc.vcapp("home-1", "events", "--json").stdout)]
    assert kinds.count("node.joined") == 2 and "etcd.member.promoted" in kinds


def etcd_put(cc, machine: str, target: str, *curl_args: str) -> subprocess.CompletedProcess:
    """A put through etcd's HTTP gateway on `target`'s cluster address, from `machine`, as any
    process there could try it: the forged admin token of issue 15."""
    body = '{"key": "L3ZjL3Rva2Vucy9hZG1pbi9mb3JnZWQ=", "value": "e30="}'  # /vc/tokens/admin/forged
    return cc.sim.run(machine, "curl", "-sS", "--max-time", "5", "-X", "POST", "-d", body, *curl_args,
                      f"https://{cc.sim.addr(target)}:2379/v3/kv/put", check=False, timeout=15)


def test_etcd_admits_only_clients_with_a_cluster_certificate_and_a_login(cc):
    tls = etcdtls.paths(cc.sim.dc.host_dir("home-2") / "data")
    for args in [("--cacert", str(tls.ca)), ("--insecure",)]:  # TLS without a client certificate
        refused = etcd_put(cc, "home-2", "home-1", *args)
        assert refused.returncode != 0 and not refused.stdout, refused
    plain = cc.sim.run("home-2", "curl", "-sS", "--max-time", "5", "-X", "POST", "-d", "{}",
                       f"http://{cc.sim.addr('home-1')}:2379/v3/kv/put", check=False, timeout=15)
    assert plain.returncode != 0 or "revision" not in plain.stdout, plain
    assert cc.etcd("home-1", "get", "/vc/tokens/admin/forged").stdout == ""
    cert = ("--cacert", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key))
    no_login = etcd_put(cc, "home-2", "home-1", *cert)  # a certificate alone: a machine, but which?
    assert "user name is empty" in no_login.stdout and "revision" not in no_login.stdout, no_login
    login = json.loads(tls.auth.read_text())  # vcapp/state/etcdauth.py: the machine's etcd user
    token = json.loads(cc.sim.run("home-2", "curl", "-sS", "--max-time", "5", *cert, "-X", "POST",
                                  "-d", json.dumps({"name": login["user"], "password": login["password"]}),
                                  f"https://{cc.sim.addr('home-1')}:2379/v3/auth/authenticate").stdout)["token"]
    ok = etcd_put(cc, "home-2", "home-1", *cert, "-H", f"Authorization: {token}")
    assert ok.returncode == 0 and "revision" in ok.stdout, ok  # the machine's certificate and login work
    cc.etcd("home-1", "del", "/vc/tokens/admin/forged")


@pytest.mark.parametrize("case", ["garbage", "wrong-secret", "revoked", "expired", "used-up"])
def test_bad_join_tokens_are_refused_and_leave_no_trace(cc, case):
    token, message = _bad_token(cc, case)
    proc = cc.join("home-4", token=token, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "home-4" not in cc.nodes("home-1")
    assert not (cc.sim.dc.host_dir("home-4") / "data" / "node.json").exists()


def _bad_token(cc, case: str) -> tuple[str, str]:
    if case == "garbage":
        return "vcjoin_nonsense", "not a vcapp join token"
    if case == "wrong-secret":
        return cc.join_token[:-4] + "AAAA", "not recognised"
    create = ["tokens", "join", "create", "--json"]
    if case == "expired":
        created = json.loads(cc.vcapp("home-1", *create, "--expires", "1s").stdout)
        time.sleep(1.5)
        return created["token"], "expired"
    if case == "used-up":
        created = json.loads(cc.vcapp("home-1", *create, "--uses", "1").stdout)
        _use_once(cc, created["token"])
        return created["token"], "used up"
    created = json.loads(cc.vcapp("home-1", *create).stdout)
    cc.vcapp("home-1", "tokens", "join", "revoke", created["id"])
    return created["token"], "revoked"


def _use_once(cc, token: str) -> None:
    """Use a token up with a join that succeeds, then take that machine out again."""
    cc.join("home-4", token=token)
    cc.vcapp("home-4", "node", "leave")


def test_duplicate_name_is_refused(cc):
    proc = cc.sim.run("home-4", "vcapp", "node", "join", cc.join_token, "--name", "home-2", check=False)
    assert proc.returncode != 0 and "already in the cluster" in proc.stderr
    assert not (cc.sim.dc.host_dir("home-4") / "data" / "node.json").exists()


def test_killed_machine_is_marked_down_within_the_lease_and_etcd_keeps_quorum(cc):
    start = time.monotonic()
    cc.sim.dc.kill("home-3")
    cc.wait(lambda: not cc.nodes("home-1")["home-3"]["up"], LEASE_TTL + 2, "home-3 marked down")
    took = time.monotonic() - start
    print(f"kill -> down: {took:.1f}s (lease TTL {LEASE_TTL}s)")
    # the controller records the event on its next look (a tick after the lease is gone)
    down = cc.wait(lambda: [e for e in json.loads(cc.vcapp("home-1", "events", "--json").stdout)
                            if e["kind"] == "node.down"], 5, "the node.down event", interval=0.5)
    assert down[-1]["node"] == "home-3"
    cc.etcd("home-1", "put", "/vc/probe/quorum", "ok")  # 2 of 3 voters: still writable
    cc.sim.dc.revive("home-3")
    cc.wait(lambda: cc.nodes("home-1")["home-3"]["up"], 30, "home-3 back up")


def etcd_healthy(cc) -> bool:
    return cc.etcd("home-1", "endpoint", "health", "--cluster", check=False).returncode == 0


def test_dead_member_is_replaced_by_a_live_machine(cc):
    cc.join("home-4")
    # The machine revived by the test before must have its etcd member back first: killing a
    # second voter while one still catches up leaves no quorum to change the membership with.
    cc.wait(lambda: etcd_healthy(cc), 90, "all three etcd members healthy", interval=1)
    cc.sim.dc.kill("home-2")
    # Remove the dead member, add home-4 as a learner, let it catch up, promote it: seconds
    # on a quiet machine; CI's loaded 2-core runner once needed more than 30 s of slack.
    try:
        cc.wait(lambda: set(all_voters(cc, 3) or ()) == {"home-1", "home-3", "home-4"},
                TEST_REPLACE_AFTER + LEASE_TTL + 90, "home-4 to replace home-2's etcd member")
    except AssertionError:
        print("members:", voters(cc), cc.etcd("home-1", "endpoint", "health", "--cluster", check=False).stdout)
        for m in ("home-1", "home-3", "home-4"):
            lines = (cc.sim.dc.host_dir(m) / "log" / "vcapp-node.log").read_text(errors="replace").splitlines()
            print(f"--- {m}\n" + "\n".join(l[:300] for l in lines if "etcd" in l or "member" in l)[-3000:])
        raise
    cc.etcd("home-1", "put", "/vc/probe/after-replace", "ok")
    cc.sim.dc.revive("home-2")
    cc.wait(lambda: cc.nodes("home-1")["home-2"]["up"], 30, "home-2 back up")
    node_json = cc.sim.dc.host_dir("home-2") / "data" / "node.json"
    cc.wait(lambda: not json.loads(node_json.read_text())["etcd"]["member"], 30,
            "home-2 to notice its member was replaced and carry on as a client")
    assert list((cc.sim.dc.host_dir("home-2") / "data").glob("etcd.removed-*"))  # its old data kept aside


def test_cold_start_brings_everything_back(cc):
    before = cc.nodes("home-1")
    tokens_before = cc.vcapp("home-1", "tokens", "join", "list", "--json").stdout
    for m in cc.machines:
        cc.sim.dc.kill(m)
    for m in reversed(cc.machines):
        cc.sim.dc.revive(m)
    after = cc.wait(cc.all_up, 60, "every machine up after a cold start")
    assert set(after) == set(before)
    assert cc.vcapp("home-1", "tokens", "join", "list", "--json").stdout == tokens_before


def test_api_refuses_without_a_valid_admin_token(cc):
    url = f"http://{cc.sim.addr('home-1')}:7180"
    no_token = cc.sim.run("home-2", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{url}/v1/nodes").stdout
    assert no_token == "401"
    created = json.loads(cc.vcapp("home-1", "tokens", "admin", "create", "--name", "temp", "--json").stdout)
    auth = ["-H", f"Authorization: Bearer {created['token']}"]
    ok = cc.sim.run("home-2", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *auth, f"{url}/v1/nodes").stdout
    assert ok == "200"
    cc.vcapp("home-1", "tokens", "admin", "revoke", created["id"])
    revoked = cc.sim.run("home-2", "curl", "-s", *auth, f"{url}/v1/tokens/join", "-X", "POST",
                         "-H", "Content-Type: application/json", "-d", "{}").stdout
    assert "revoked" in revoked
    bad_json = cc.sim.run("home-2", "curl", "-s", "-w", " %{http_code}", "-H",
                          f"Authorization: Bearer {cc.admin_token}", "-H", "Content-Type: application/json",
                          "-X", "POST", "-d", "{not json", f"{url}/v1/tokens/join").stdout
    assert bad_json.endswith(" 400") and "not valid JSON" in bad_json


def test_a_removed_machine_cannot_reach_etcd_with_its_certificate(cc):
    cc.wait(cc.all_up, 60, "every machine up")
    home1 = [cc.sim.addr("home-1")]
    assert cc.sim.etcdctl("home-4", home1, "get", "/vc/cluster", check=False).returncode == 0
    cc.vcapp("home-1", "node", "remove", "home-4", "--yes")
    start = time.monotonic()
    refused = cc.wait(lambda: cc.sim.etcdctl("home-4", home1, "--dial-timeout=2s", "get", "/vc/cluster",
                                             check=False).returncode != 0, 10, "home-4's certificate refused")
    print(f"node remove -> home-4's certificate refused: {time.monotonic() - start:.1f}s")
    assert refused
    # Removing the member that led etcd makes the others elect a leader: the member list can fail
    # for a moment meanwhile (seen once in a run of the module with others).
    others = cc.wait(lambda: [n for n, learner in voters(cc).items() if not learner and n not in ("home-1", "home-4")],
                     30, "the remaining voters listed")
    for other in others:  # every member has the list, not only the one asked
        out = cc.sim.etcdctl("home-4", [cc.sim.addr(other)], "--dial-timeout=2s", "get", "/vc/cluster", check=False)
        assert out.returncode != 0, out
        cc.sim.etcdctl("home-1", [cc.sim.addr(other)], "put", "/vc/probe/after-remove", "ok")  # others still can
    # Voters only: the controller invites home-2 back as a learner meanwhile, and etcdctl 3.4
    # authenticates through any of its endpoints, which a learner refuses ("rpc not supported
    # for learner", CI stop 30).
    members = home1 + [cc.sim.addr(m) for m in others]  # not the removed machine's
    users = cc.sim.etcdctl("home-1", members, "user", "list", *root_login(cc)).stdout.split()
    assert "home-4" not in users and "home-1" in users, users  # its etcd user went with it
