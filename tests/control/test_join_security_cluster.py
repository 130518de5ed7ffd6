"""Issue 15 items 4-6 on a real cluster installed as `vcapp dev up` does (platform.install:
node daemon, the mesh edge, `vcapp edge run` with its edge-scoped token). A stranger on the
backbone (the client host) talks to the edge's plain-HTTP coordination port as an attacker
on the path would see it:

- a join through the edge crosses the wire sealed: its answer holds no clear key;
- a new join token admits one machine: the second join with it is refused;
- a machine removed with `vcapp node remove` has its mesh credential refused at the edge
  within 10 s (the edge learns it from GET /v1/ingress, without etcd access).
"""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mesh import auth
from vcapp import etcdtls, joinbox, tokens
from vcapp.dev import platform

pytestmark = pytest.mark.cluster

# Issue 15: a removed machine's credential is refused at the edge within 10 s of its removal.
REVOKE_WITHIN = 10.0
COORD_PORT = platform.EDGE_COORD_PORT


@pytest.fixture(scope="module")
def cl(make_sim):
    sim = make_sim(home=1, office=0)
    platform.install(sim.dc, say=lambda line: None)
    return sim


def coord(sim) -> str:
    return f"http://{sim.addr('edge')}:{COORD_PORT}/_mesh"


def post_json(sim, url: str, body: dict, headers: dict | None = None) -> tuple[str, bytes]:
    """POST from the client host; (status, the answer's body exactly as it came over the wire)."""
    args = [a for k, v in (headers or {}).items() for a in ("-H", f"{k}: {v}")]
    out = sim.run("client", "curl", "-sS", "--max-time", "20", "-X", "POST", "-H", "Content-Type: application/json",
                  *args, "--data-binary", "@-", "-w", "\n%{http_code}", url, input=json.dumps(body),
                  check=False, timeout=30)
    wire, _, status = out.stdout.rpartition("\n")
    return status, wire.encode()


def signed_get_peers(sim, node: str, ip: str, credential: str) -> tuple[str, str]:
    headers = auth.sign(credential, "peers", node, ip)
    args = [a for k, v in headers.items() for a in ("-H", f"{k}: {v}")]
    out = sim.fetch(f"{coord(sim)}/peers?wait=0", *args, "-w", "\n%{http_code}")
    body, _, status = out.stdout.rpartition("\n")
    return status, body


def phantom(name: str) -> dict:
    """A machine as `vcapp node join` describes itself (it never starts: the test only needs
    what the cluster hands it)."""
    return {"name": name, "site": "away", "addr": "198.51.100.7", "api_url": "http://198.51.100.7:7180",
            "resources": {"cpus": 1, "memory_mb": 1000, "free_memory_mb": 500, "disk_mb": 10_000,
                          "free_disk_mb": 5_000}, "version": "test"}


def join_through_edge(sim, token: str, name: str) -> tuple[str, bytes, joinbox.Sealed]:
    csr = etcdtls.make_csr(etcdtls.new_key(), name)  # `vcapp node join` asks for its etcd certificate
    sealed = joinbox.seal_request(tokens.parse_join_token(token).join_key,
                                  {"token": token, "node": phantom(name), "csr": csr})
    status, wire = post_json(sim, f"{coord(sim)}/v1/join", sealed.body)
    return status, wire, sealed


def test_a_join_through_the_edge_is_sealed_single_use_and_a_removed_machine_loses_the_mesh(cl):
    sim = cl
    cluster_key = base64.b64decode((sim.dc.host_dir("home-1") / "data" / "keys" / "cluster.key").read_text())
    token = json.loads(sim.run("home-1", "vcapp", "tokens", "join", "create", "--json").stdout)["token"]

    status, wire, sealed = join_through_edge(sim, token, "phantom")
    assert status == "201", wire
    # What the edge relayed (and anyone on the path saw): one sealed box, no key in any form.
    assert set(json.loads(wire)) == {"box"}
    for form in (cluster_key, base64.b64encode(cluster_key), cluster_key.hex().encode()):
        assert form not in wire
    assert b"cluster_key" not in wire and b"credential" not in wire
    answer = sealed.open_answer(json.loads(wire))
    assert base64.b64decode(answer["cluster_key"]) == cluster_key
    mesh = answer["mesh"]

    again, refusal, _ = join_through_edge(sim, token, "phantom-2")
    assert again == "401" and "is used up (1 of 1 uses)" in json.loads(refusal)["error"], refusal
    nodes = {n["name"] for n in json.loads(sim.run("home-1", "vcapp", "nodes", "--json").stdout)}
    assert "phantom" in nodes and "phantom-2" not in nodes

    # The credential the join handed out opens the mesh: registration and the peer list.
    public = base64.b64encode(X25519PrivateKey.generate().public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)).decode()
    registration = {"node": "phantom", "mesh_ip": mesh["ip"], "public_key": public, "lan_endpoints": []}
    raw = json.dumps(registration)
    status, body = post_json(sim, f"{coord(sim)}/register", registration,
                             auth.sign(mesh["credential"], "register", "phantom", mesh["ip"], raw.encode()))
    assert status == "200", body
    assert signed_get_peers(sim, "phantom", mesh["ip"], mesh["credential"])[0] == "200"

    refused: list[tuple[float, str]] = []  # (wall time, answer) of the first refusal

    def watch() -> None:  # polls from before the removal, as the removed machine's agent does
        deadline = time.time() + 60
        while time.time() < deadline:
            status, body = signed_get_peers(sim, "phantom", mesh["ip"], mesh["credential"])
            if status == "403":
                refused.append((time.time(), body))
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    sim.run("home-1", "vcapp", "node", "remove", "phantom", "--yes")
    # When the removal was written: its event, recorded right after the transaction (the
    # simulated hosts share this host's clock).
    events = json.loads(sim.run("home-1", "vcapp", "events", "--json").stdout)
    removed = next(e["time"] for e in events if e["kind"] == "node.removed" and e.get("node") == "phantom")
    watcher.join()
    assert refused, "the removed machine's credential still opened the edge's peer list 60 s later"
    at, body = refused[0]
    took = at - removed
    assert took < REVOKE_WITHIN, f"the removed machine's credential was refused only {took:.1f}s after its removal"
    print(f"node remove -> credential refused at the edge: {took:.1f}s")
    assert "removed from the cluster" in json.loads(body)["error"]
    edge_registry = (sim.dc.host_dir("edge") / "data" / "mesh" / "edge-registry.json").read_text()
    assert "phantom" not in edge_registry and public not in edge_registry
    # The cluster's own machine keeps its place on the mesh.
    home = json.loads(sim.run("home-1", "vcapp", "mesh", "status", "--json").stdout)
    home_cred = (sim.dc.host_dir("home-1") / "data" / "keys" / "mesh.credential").read_text()
    assert signed_get_peers(sim, "home-1", home["mesh_ip"], home_cred)[0] == "200"
