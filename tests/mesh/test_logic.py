"""Pure parts of the mesh: credentials, path decisions, relay framing, registrations."""

from __future__ import annotations

import io

import pytest

from mesh import auth, coord, relay
from mesh.paths import (
    DIRECT,
    DIRECT_TRUST,
    FLAP_HOLD,
    LAN,
    RELAY_TCP,
    RELAY_UDP,
    Candidate,
    DirectLink,
    EdgeLink,
    candidates,
    relay_kind,
    routed_direct,
)
from mesh.registry import Conflict, Registration, Registry

pytestmark = pytest.mark.unit

KEY = bytes(range(32))


# ---- credentials -------------------------------------------------------------------------

def test_a_credential_proves_only_its_own_node_ip_and_key():
    cred = auth.issue_credential(KEY, "home-1", "100.96.1.1")

    def problem(credential: str, node: str, ip: str, key: bytes = KEY) -> str | None:
        headers = auth.sign(credential, "register", node, ip, b"{}", now=1000)
        return auth.proof_problem(key, "register", headers, b"{}", now=1000)

    assert len(cred) == 64 and problem(cred, "home-1", "100.96.1.1") is None
    assert problem(cred.upper() + "\n", "home-1", "100.96.1.1") is None  # as read from a file
    assert problem(cred, "home-2", "100.96.1.1")
    assert problem(cred, "home-1", "100.96.1.2")
    assert problem(cred, "home-1", "100.96.1.1", key=b"another key of thirty-two bytes!")
    assert problem(cred[:-1] + ("0" if cred[-1] != "0" else "1"), "home-1", "100.96.1.1")
    assert problem("", "home-1", "100.96.1.1")


def test_signed_requests_prove_the_credential_without_carrying_it():
    cred = auth.issue_credential(KEY, "home-1", "100.96.1.1")
    body = b'{"public_key": "mine"}'
    headers = auth.sign(cred, "register", "home-1", "100.96.1.1", body, now=1000)
    assert cred not in "".join(headers.values())
    assert auth.proof_problem(KEY, "register", headers, body, now=1010) is None
    # Seen on the wire and replayed with another key, for another action, or much later: refused.
    assert "does not verify" in auth.proof_problem(KEY, "register", headers, b'{"public_key": "evil"}', now=1010)
    assert "does not verify" in auth.proof_problem(KEY, "peers", headers, body, now=1010)
    assert "clock" in auth.proof_problem(KEY, "register", headers, body, now=1000 + auth.PROOF_WINDOW + 1)
    forged = auth.sign(auth.issue_credential(b"x" * 32, "home-1", "100.96.1.1"), "register", "home-1",
                       "100.96.1.1", body, now=1000)
    assert "does not verify" in auth.proof_problem(KEY, "register", forged, body, now=1000)
    assert "missing" in auth.proof_problem(KEY, "register", {}, body)


def test_mesh_key_parsing():
    assert auth.load_mesh_key(KEY.hex() + "\n") == KEY
    with pytest.raises(ValueError, match="too short"):
        auth.load_mesh_key("abcd")


# ---- candidates and direct links ---------------------------------------------------------

ME = {"public_ip": "203.0.113.21"}
SAME_SITE = {"public_ip": "203.0.113.21", "endpoint": "203.0.113.21:4000", "transport": "udp",
             "lan_endpoints": ["10.1.0.12:4000"]}
OTHER_SITE = {"public_ip": "203.0.113.22", "endpoint": "203.0.113.22:5000", "transport": "udp",
              "lan_endpoints": ["10.2.0.11:5000"]}


def test_candidates_prefer_the_lan_on_the_same_site_and_skip_it_elsewhere():
    assert candidates(ME, SAME_SITE) == [Candidate(LAN, "10.1.0.12:4000"), Candidate(DIRECT, "203.0.113.21:4000")]
    assert candidates(ME, OTHER_SITE) == [Candidate(DIRECT, "203.0.113.22:5000")]
    over_tcp = dict(OTHER_SITE, endpoint=None, transport="tcp")
    assert candidates(ME, over_tcp) == []


def _step(link, t, cands, rx, current=None):
    return link.update(t, cands, rx, current)


def test_a_heard_lan_path_is_used_and_kept():
    link, cands = DirectLink(), candidates(ME, SAME_SITE)
    assert _step(link, 0, cands, 0) == "10.1.0.12:4000"
    assert _step(link, 1, cands, 148, "10.1.0.12:4000") is None
    assert link.alive(1) and link.path(1, "10.1.0.12:4000", RELAY_UDP) == LAN
    for t in range(2, 30, 3):  # keepalives keep arriving
        assert _step(link, t, cands, 148 + 32 * t, "10.1.0.12:4000") is None
    assert link.path(29, "10.1.0.12:4000", RELAY_UDP) == LAN


def test_an_unanswered_candidate_gives_way_to_the_next_then_the_relay():
    link, cands = DirectLink(retry=60), candidates(ME, SAME_SITE)
    assert _step(link, 0, cands, 0) == "10.1.0.12:4000"
    assert _step(link, DIRECT_TRUST - 1, cands, 0) is None
    assert _step(link, DIRECT_TRUST, cands, 0) == "203.0.113.21:4000"  # next candidate
    assert link.path(DIRECT_TRUST, None, RELAY_UDP) == RELAY_UDP
    # All failed: park on the best one (keepalives keep probing it) until the retry.
    assert _step(link, 2 * DIRECT_TRUST, cands, 0) == "10.1.0.12:4000"
    assert _step(link, 30, cands, 0) is None
    assert _step(link, 2 * DIRECT_TRUST + 60, cands, 0) == "10.1.0.12:4000"  # walk again
    # A path that starts answering is taken at once, without waiting for the retry.
    assert _step(link, 80, cands, 92, "10.1.0.12:4000") is None
    assert link.path(80, "10.1.0.12:4000", RELAY_UDP) == LAN


def test_silence_on_a_working_path_falls_back_to_the_relay_and_recovers():
    link, cands = DirectLink(retry=60), candidates(ME, OTHER_SITE)
    _step(link, 0, cands, 0)
    _step(link, 1, cands, 100, "203.0.113.22:5000")
    assert link.path(1, "203.0.113.22:5000", RELAY_UDP) == DIRECT
    assert link.alive(1 + DIRECT_TRUST - 0.1)
    assert not link.alive(1 + DIRECT_TRUST)
    assert link.path(1 + DIRECT_TRUST, "203.0.113.22:5000", RELAY_TCP) == RELAY_TCP
    assert _step(link, 1 + DIRECT_TRUST, cands, 100) == "203.0.113.22:5000"  # re-punch, then park
    _step(link, 20, cands, 164, "203.0.113.22:5000")
    assert link.path(20, "203.0.113.22:5000", RELAY_UDP) == DIRECT


def test_a_link_that_keeps_dropping_is_held_on_the_relay():
    link, cands = DirectLink(retry=60), candidates(ME, OTHER_SITE)
    ep = "203.0.113.22:5000"
    _step(link, 0, cands, 0)
    rx, t = 0, 1.0

    def hear(at):
        nonlocal rx
        rx += 32
        _step(link, at, cands, rx, ep)

    hear(t)
    assert link.alive(t)
    _step(link, t + DIRECT_TRUST, cands, rx, ep)  # first loss
    assert not link.alive(t + DIRECT_TRUST)
    hear(t + 8)  # answers again: taken back at once
    assert link.alive(t + 8)
    _step(link, t + 8 + DIRECT_TRUST, cands, rx, ep)  # lost again within a minute
    hear(t + 16)
    assert not link.alive(t + 16), "held on the relay after a second loss"
    assert link.path(t + 16, ep, RELAY_UDP) == RELAY_UDP
    hear(t + 8 + DIRECT_TRUST + FLAP_HOLD)
    assert link.alive(t + 8 + DIRECT_TRUST + FLAP_HOLD)


def test_a_roamed_peer_is_tried_at_its_new_endpoint_at_once():
    link, cands = DirectLink(), candidates(ME, OTHER_SITE)
    _step(link, 0, cands, 0)
    _step(link, 1, cands, 100, "203.0.113.22:5000")
    moved = candidates(ME, dict(OTHER_SITE, endpoint="203.0.113.42:5000", public_ip="203.0.113.42"))
    assert _step(link, 2, moved, 100, "203.0.113.22:5000") == "203.0.113.42:5000"
    # ...but a refreshed list that still holds the working endpoint changes nothing.
    link2 = DirectLink()
    same = candidates(ME, SAME_SITE)
    _step(link2, 0, same, 0)
    _step(link2, 1, same, 100, "10.1.0.12:4000")
    refreshed = candidates(ME, dict(SAME_SITE, endpoint="203.0.113.21:4999"))
    assert _step(link2, 2, refreshed, 100, "10.1.0.12:4000") is None


def test_edge_link_moves_to_tcp_when_the_edge_is_not_heard_and_back_when_udp_works():
    edge = EdgeLink(0, retry=15)
    assert edge.update(1, 0) is None
    assert edge.update(3, 92) is None and edge.heard(3)
    assert edge.update(9, 92) is None  # heard 6 s ago: still trusted
    assert edge.update(10, 92) == "tcp"
    assert not edge.wants_probe(20) and edge.wants_probe(25)
    assert edge.probed(25, False) is None and edge.transport == "tcp"
    assert edge.probed(40, True) == "udp"


def test_a_peer_goes_direct_only_while_both_ends_route_it_directly():
    assert routed_direct(True, "100.96.1.1", {"relayed": ["100.96.1.3"]})
    assert not routed_direct(True, "100.96.1.1", {"relayed": ["100.96.1.1"]}), "it relays us: relay it too"
    assert not routed_direct(False, "100.96.1.1", {"relayed": []})
    assert routed_direct(True, "100.96.1.1", {}), "a peer list without the field (an older edge)"


def test_relayed_messages_are_checked():
    assert coord.validate_relayed({"relayed": ["100.96.1.2"]}) is None
    assert coord.validate_relayed({"relayed": []}) is None
    assert "list" in coord.validate_relayed({"relayed": "100.96.1.2"})
    assert "list" in coord.validate_relayed({})
    assert "not an IPv4" in coord.validate_relayed({"relayed": ["100.96.1.2", "x\n"]})
    assert "at most" in coord.validate_relayed({"relayed": ["100.96.1.2"] * (coord.MAX_RELAYED + 1)})


def test_relay_kind_is_tcp_if_either_end_uses_tcp():
    assert relay_kind("udp", "udp") == RELAY_UDP
    assert relay_kind("tcp", "udp") == RELAY_TCP
    assert relay_kind("udp", "tcp") == RELAY_TCP


# ---- relay framing -------------------------------------------------------------------------

def test_relay_frames_round_trip_and_keepalives_are_empty():
    stream = io.BytesIO(relay.frame(b"hello") + relay.frame(b"") + relay.frame(b"x" * 1500))
    assert relay.read_frame(stream) == b"hello"
    assert relay.read_frame(stream) == b""
    assert relay.read_frame(stream) == b"x" * 1500
    assert relay.read_frame(stream) is None


def test_relay_frame_cut_short_is_end_of_stream():
    assert relay.read_frame(io.BytesIO(relay.frame(b"hello")[:4])) is None
    with pytest.raises(ValueError):
        relay.frame(b"x" * 70000)


# ---- registrations ------------------------------------------------------------------------

def test_registry_binds_ip_and_key_to_one_node(tmp_path):
    reg = Registry(tmp_path / "r.json")
    assert reg.register(Registration("home-1", "100.96.1.1", "K1"))
    assert not reg.register(Registration("home-1", "100.96.1.1", "K1"))
    with pytest.raises(Conflict, match="bound to node 'home-1'"):
        reg.register(Registration("evil", "100.96.1.1", "K2"))
    with pytest.raises(Conflict, match="already registered"):
        reg.register(Registration("evil", "100.96.9.9", "K1"))
    assert reg.register(Registration("home-1", "100.96.1.1", "K3"))  # a reinstall brings a new key
    assert Registry(tmp_path / "r.json").get("home-1").public_key == "K3"


def test_registration_messages_are_checked():
    good = {"node": "a", "mesh_ip": "100.96.1.1", "public_key": "k", "lan_endpoints": ["10.0.0.1:1"]}
    assert coord.validate_registration(good) is None
    assert "mesh_ip" in coord.validate_registration(dict(good, mesh_ip="nope"))
    assert "public_key" in coord.validate_registration({k: v for k, v in good.items() if k != "public_key"})
    assert "lan_endpoints" in coord.validate_registration(dict(good, lan_endpoints="10.0.0.1"))
