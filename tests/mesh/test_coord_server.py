"""The edge's coordination server, really started on 127.0.0.1: a request with a bad
Content-Length is refused at once without its body being read, a slow caller is cut off,
and a revoked mesh IP's credential is refused while the others still work; whom a machine relays
reaches its peers."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from mesh import auth, server
from mesh import coord as protocol  # `coord` is the fixture here
from mesh.registry import Registration, Registry, read_revoked, revoked_path, write_revoked

pytestmark = pytest.mark.unit

KEY = bytes(range(32))
EDGE = {"public_key": "E" * 43 + "=", "mesh_ip": "100.96.0.1", "wg_port": 51820, "probe_port": 0}
# A refusal answers in milliseconds; this leaves room for a loaded 2-core runner.
PROMPT = 2.0


@pytest.fixture
def coord(tmp_path):
    registry = Registry(tmp_path / "edge-registry.json")
    state = server.CoordState(KEY, registry, EDGE, "100.96.0.0/16")
    service = server.MeshService(state, "127.0.0.1", 0, 0).start()
    yield state, service.port
    service.close()


class Peer:
    """A sender that counts how much of its body the server took off the socket."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self.sent = 0

    def send_head(self, length: str, path: str = "/_mesh/register") -> None:
        self.sock.sendall(f"POST {path} HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {length}\r\n\r\n".encode())

    def answer(self) -> tuple[int, dict]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        while len(body) < length:
            body += self.sock.recv(65536)
        return int(head.split()[1]), json.loads(body)

    def closed_by_server(self) -> bool:
        self.sock.settimeout(PROMPT)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


@pytest.mark.parametrize("length, status, message", [
    ("-1", 400, "is not a byte count"),
    ("abc", 400, "is not a byte count"),
    ("1e3", 400, "is not a byte count"),
    (str(10 ** 12), 413, "too large: at most 65536 bytes"),
    (str(server.MAX_BODY + 1), 413, "too large"),
])
@pytest.mark.parametrize("path", ["/_mesh/register", "/_mesh/v1/join"])
def test_a_bad_content_length_is_refused_at_once_and_the_body_is_not_read(coord, length, status, message, path):
    _, port = coord
    peer = Peer(port)
    started = time.monotonic()
    peer.send_head(length, path)
    # Offer far more than MAX_BODY behind it: the server must answer without taking it in.
    pump = threading.Thread(target=lambda: _pump(peer, 8 * server.MAX_BODY), daemon=True)
    pump.start()
    code, body = peer.answer()
    assert time.monotonic() - started < PROMPT
    assert code == status and message in body["error"], body
    assert peer.closed_by_server()
    pump.join(PROMPT)
    # What the kernel buffers (socket buffers of both ends) is all that left the sender; the
    # server read none of it, or the whole 512 KiB offered would have gone.
    assert peer.sent < 8 * server.MAX_BODY


def _pump(peer: Peer, total: int) -> None:
    peer.sock.settimeout(PROMPT)
    try:
        while peer.sent < total:
            peer.sent += peer.sock.send(b"x" * 4096)
    except OSError:
        pass


def test_a_good_registration_still_works_and_chunked_bodies_are_refused(coord):
    state, port = coord
    node, ip = "home-1", "100.96.0.10"
    raw = json.dumps({"node": node, "mesh_ip": ip, "public_key": "A" * 43 + "=", "lan_endpoints": []}).encode()
    headers = auth.sign(auth.issue_credential(KEY, node, ip), "register", node, ip, raw)
    peer = Peer(port)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    peer.sock.sendall(f"POST /_mesh/register HTTP/1.1\r\nHost: edge\r\n{head}Content-Length: {len(raw)}\r\n\r\n".encode() + raw)
    assert peer.answer()[0] == 200 and state.registry.get(node)
    chunked = Peer(port)
    chunked.sock.sendall(b"POST /_mesh/register HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    code, body = chunked.answer()
    assert code == 400 and "Content-Length" in body["error"]


@pytest.mark.parametrize("stall", ["headers", "body"])
def test_a_slow_caller_is_cut_off(tmp_path, monkeypatch, stall):
    monkeypatch.setattr(server, "READ_TIMEOUT", 1.0)  # read when the handler class is made
    state = server.CoordState(KEY, Registry(tmp_path / "r.json"), EDGE, "100.96.0.0/16")
    service = server.MeshService(state, "127.0.0.1", 0, 0).start()
    try:
        peer = Peer(service.port)
        if stall == "headers":
            peer.sock.sendall(b"POST /_mesh/register HTTP/1.1\r\nHost: ed")  # ...and nothing more
        else:
            peer.send_head("100")
            peer.sock.sendall(b"{")
        peer.sock.settimeout(10)
        started = time.monotonic()
        try:
            peer.sock.recv(65536)
        except ConnectionResetError:
            pass
        held = time.monotonic() - started
        assert held < 1.0 + PROMPT, f"a stalled request held its thread {held:.1f}s"
    finally:
        service.close()


def _signed_get(port: int, action: str, node: str, ip: str, credential: str) -> tuple[int, dict]:
    peer = Peer(port)
    head = "".join(f"{k}: {v}\r\n" for k, v in auth.sign(credential, action, node, ip).items())
    peer.sock.sendall(f"GET /_mesh/{action}?wait=0 HTTP/1.1\r\nHost: edge\r\n{head}\r\n".encode())
    return peer.answer()


def _register(state, node: str, ip: str, key: str) -> None:
    state.registry.register(Registration(node, ip, key))


def test_a_revoked_mesh_ip_is_refused_and_forgotten(coord):
    state, port = coord
    _register(state, "home-1", "100.96.0.10", "A" * 43 + "=")
    _register(state, "home-2", "100.96.0.11", "B" * 43 + "=")
    cred = {n: auth.issue_credential(KEY, n, ip) for n, ip in (("home-1", "100.96.0.10"), ("home-2", "100.96.0.11"))}
    assert _signed_get(port, "peers", "home-2", "100.96.0.11", cred["home-2"])[0] == 200
    version = state.version
    assert state.revoke(frozenset({"100.96.0.11"})) == ["home-2"]
    assert state.version > version and state.registry.get("home-2") is None
    code, body = _signed_get(port, "peers", "home-2", "100.96.0.11", cred["home-2"])
    assert code == 403 and "removed from the cluster" in body["error"]
    code, body = _signed_get(port, "peers", "home-1", "100.96.0.10", cred["home-1"])
    assert code == 200 and body["peers"] == []


def test_revoked_ips_file_round_trip(tmp_path: Path):
    path = revoked_path(tmp_path / "edge-registry.json")
    assert read_revoked(path) == frozenset()
    assert write_revoked(path, ["100.96.0.12", "100.96.0.11"]) is True
    assert write_revoked(path, ["100.96.0.11", "100.96.0.12"]) is False
    assert read_revoked(path) == {"100.96.0.11", "100.96.0.12"}
    path.write_text('{"not": "a list"}')
    with pytest.raises(ValueError, match="expected a JSON list"):
        read_revoked(path)


def test_whom_a_machine_relays_reaches_its_peers_only_from_that_machine(coord):
    """home-1 posts that it reaches home-2 only through the edge: home-2's peer list says so
    (home-2 then relays home-1 too); a forged, malformed or unregistered post changes nothing."""
    state, port = coord
    _register(state, "home-1", "100.96.0.10", "A" * 43 + "=")
    _register(state, "home-2", "100.96.0.11", "B" * 43 + "=")
    one = protocol.Client(f"http://127.0.0.1:{port}/_mesh",
                          protocol.Identity("home-1", "100.96.0.10", auth.issue_credential(KEY, "home-1", "100.96.0.10")))
    version = state.version
    one.relayed(["100.96.0.11"])
    assert state.version > version
    code, body = _signed_get(port, "peers", "home-2", "100.96.0.11", auth.issue_credential(KEY, "home-2", "100.96.0.11"))
    assert code == 200 and body["peers"][0]["node"] == "home-1" and body["peers"][0]["relayed"] == ["100.96.0.11"]
    version = state.version
    one.relayed(["100.96.0.11"])  # the same again is no news for the long polls
    assert state.version == version

    forged = protocol.Client(f"http://127.0.0.1:{port}/_mesh", protocol.Identity("home-1", "100.96.0.10", "x" * 43))
    with pytest.raises(protocol.CoordError) as refused:
        forged.relayed([])
    assert refused.value.status == 403
    with pytest.raises(protocol.CoordError, match="not an IPv4 address") as bad:
        one.relayed(["home-2"])
    assert bad.value.status == 400
    stranger = protocol.Client(f"http://127.0.0.1:{port}/_mesh",
                               protocol.Identity("new-1", "100.96.0.12", auth.issue_credential(KEY, "new-1", "100.96.0.12")))
    with pytest.raises(protocol.CoordError, match="POST /register first"):
        stranger.relayed([])
    assert state.relayed == {"home-1": ("100.96.0.11",)} and state.version == version


def test_a_restarted_edge_answers_a_poll_from_before_the_restart_at_once(tmp_path):
    """A machine long-polls with the last version it saw; the edge restarts (its registry is
    kept on disk). The first poll to the new edge must answer at once, with the new edge's
    epoch, so the machine renews its WireGuard session then, not a long poll later."""
    registry = Registry(tmp_path / "edge-registry.json")
    _register(SimpleNamespace(registry=registry), "home-1", "100.96.0.10", "A" * 43 + "=")
    identity = protocol.Identity("home-1", "100.96.0.10", auth.issue_credential(KEY, "home-1", "100.96.0.10"))

    def run_edge(epoch: str) -> tuple[server.CoordState, server.MeshService, protocol.Client]:
        state = server.CoordState(KEY, registry, {**EDGE, "epoch": epoch}, "100.96.0.0/16")
        service = server.MeshService(state, "127.0.0.1", 0, 0).start()
        return state, service, protocol.Client(f"http://127.0.0.1:{service.port}/_mesh", identity)

    state, service, client = run_edge("first")
    for _ in range(5):
        state.bump()  # machines came and went
    seen = client.peers(0, 0)["version"]
    service.close()

    state, service, client = run_edge("second")
    try:
        began = time.monotonic()
        view = client.peers(seen, 10)
        assert time.monotonic() - began < PROMPT and view["edge"]["epoch"] == "second"
        began = time.monotonic()
        assert client.peers(seen + 10 ** 9, 10)["version"] == state.version  # from a clock stepped back
        assert time.monotonic() - began < PROMPT
        began = time.monotonic()
        client.peers(view["version"], 0.5)  # nothing new: the poll waits
        assert time.monotonic() - began >= 0.4
    finally:
        service.close()
