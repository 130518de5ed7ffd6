"""The edge's mesh service: coordination (register, peer list, endpoints) and the TCP relay.

One plain-HTTP server (threads; a long poll or a relay stream holds one) plus a UDP echo on
the same port number. The message shapes are drawn in mesh/coord.py, the relay framing in
mesh/relay.py. What the edge's WireGuard observes (each machine's endpoint) is pushed in by
the edge daemon through `CoordState.observe`, the mesh IPs the cluster revoked through
`CoordState.revoke`.

Anyone on the internet can open a connection, so a request is read within READ_TIMEOUT and
its body only when it declares a Content-Length of 0..MAX_BODY: a negative, non-numeric or
larger length is refused (400/413) before a byte of the body is read.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from mesh import auth, coord, joinproxy, relay
from mesh.registry import Conflict, Registration, Registry

# The largest body any coordination request has: a registration is a few hundred bytes and
# a join request (mesh/joinproxy.py) a few KiB with its CSR.
MAX_BODY = 64 * 1024
MAX_WAIT = 60.0
# A request line, headers and a body of at most MAX_BODY arrive in well under this on any
# link that can carry WireGuard; a caller slower than that (or an idle keep-alive) is cut off
# so it cannot hold a server thread. Relay streams and long polls are not reads and not bound.
READ_TIMEOUT = 15.0

log = logging.getLogger("mesh.server")


@dataclass(frozen=True)
class Seen:
    """How the edge sees one machine right now."""

    endpoint: str | None
    public_ip: str | None
    transport: str | None


class BadLength(ValueError):
    """A Content-Length the service will not read: `status` is 400 or 413."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def body_length(headers) -> int:
    """The declared body length, 0..MAX_BODY, or BadLength saying why it is refused. Pure."""
    if headers.get("Transfer-Encoding"):
        raise BadLength(400, "send the body with a Content-Length, not Transfer-Encoding")
    values = headers.get_all("Content-Length") or []
    if len(set(values)) > 1:
        raise BadLength(400, "conflicting Content-Length headers")
    text = (values[0] if values else "0").strip()
    if not text.isdigit() or not text.isascii():
        raise BadLength(400, f"Content-Length {text[:20]!r} is not a byte count (0..{MAX_BODY})")
    if len(text) > 12 or int(text) > MAX_BODY:
        raise BadLength(413, f"body of {text[:20]} bytes is too large: at most {MAX_BODY} bytes")
    return int(text)


class CoordState:
    """Shared state of the service; every change bumps `version` and wakes long polls."""

    def __init__(self, mesh_key: bytes, registry: Registry, edge_info: dict, cidr: str,
                 revoked: frozenset[str] = frozenset()):
        self.key, self.registry, self.edge_info, self.cidr = mesh_key, registry, edge_info, cidr
        self.revoked = revoked  # mesh IPs of machines removed from the cluster
        self.cond = threading.Condition()
        # Versions go on from the wall clock (ms), so a restarted edge's are past any a machine
        # polled with before the restart, and its first poll answers at once (not after LONG_POLL).
        self.version = time.time_ns() // 1_000_000
        self.seen: dict[str, Seen] = {}
        self.http_ip: dict[str, str] = {}
        self.relay_ports: dict[int, tuple[str, str]] = {}  # loopback port -> (node, remote ip)
        self.relayed: dict[str, tuple[str, ...]] = {}  # node -> mesh IPs it reaches only through us

    def bump(self) -> None:
        with self.cond:
            self.version += 1
            self.cond.notify_all()

    def revoke(self, ips: frozenset[str]) -> list[str]:
        """Refuse these mesh IPs' credentials from now on and forget the machines registered
        at them (their WireGuard peers go at the next reconcile, and from every machine's peer
        list). Returns the nodes forgotten."""
        with self.cond:
            changed = ips != self.revoked
            self.revoked = ips
            gone = [r.node for r in self.registry.all() if r.mesh_ip in ips and self.registry.remove(r.node)]
            if changed or gone:
                self.version += 1
                self.cond.notify_all()
        return gone

    def refusal(self, action: str, headers, body: bytes = b"") -> str | None:
        """Why a signed request is refused (a bad proof or a revoked mesh IP), or None."""
        if (headers.get("X-Mesh-IP") or "") in self.revoked:
            return (f"mesh IP {headers['X-Mesh-IP']} belongs to a machine removed from the cluster; "
                    "its credential is revoked: join the cluster again with a new join token")
        return auth.proof_problem(self.key, action, headers, body)

    def set_relayed(self, node: str, ips: list[str]) -> bool:
        """Record whom `node` relays by its own measurement; True (and a new version) if it changed."""
        value = tuple(sorted(set(ips)))
        with self.cond:
            if self.relayed.get(node, ()) == value:
                return False
            self.relayed[node] = value
            self.version += 1
            self.cond.notify_all()
            return True

    def observe(self, endpoints: dict[str, str | None]) -> None:
        """Endpoints as the edge's WireGuard sees them: node -> 'ip:port' or None."""
        seen = {}
        with self.cond:
            for node, ep in endpoints.items():
                seen[node] = self._classify(node, ep)
            if seen != self.seen:
                self.seen = seen
                self.version += 1
                self.cond.notify_all()

    def _classify(self, node: str, endpoint: str | None) -> Seen:
        if endpoint and endpoint.startswith("127.0.0.1:"):
            session = self.relay_ports.get(int(endpoint.rsplit(":", 1)[1]))
            return Seen(None, session[1] if session else self.http_ip.get(node), "tcp" if session else None)
        if endpoint:
            return Seen(endpoint, endpoint.rsplit(":", 1)[0], "udp")
        return Seen(None, self.http_ip.get(node), None)


    def peer_view(self, reg: Registration) -> dict:
        seen = self.seen.get(reg.node, Seen(None, self.http_ip.get(reg.node), None))
        return {"node": reg.node, "mesh_ip": reg.mesh_ip, "public_key": reg.public_key,
                "lan_endpoints": list(reg.lan_endpoints), "endpoint": seen.endpoint,
                "public_ip": seen.public_ip, "transport": seen.transport,
                "relayed": list(self.relayed.get(reg.node, ()))}

    def snapshot(self, node: str) -> dict | None:
        """The peer list as `node` sees it; None once `node` is no longer registered."""
        regs = self.registry.all()
        me = next((r for r in regs if r.node == node), None)
        if me is None:
            return None
        return {"version": self.version, "self": self.peer_view(me), "edge": self.edge_info,
                "peers": [self.peer_view(r) for r in regs if r.node != node]}


def make_handler(state: CoordState, wg_port: int):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "vcapp-mesh"
        timeout = READ_TIMEOUT  # socket timeout on every read of the request (StreamRequestHandler)

        def log_message(self, fmt, *args):  # requests are not worth a log line each
            log.debug("%s " + fmt, self.client_address[0], *args)

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes | None:
            """The request body, or None after refusing its length (the connection then
            closes: the unread body must not be taken for the next request)."""
            try:
                length = body_length(self.headers)
            except BadLength as e:
                self.close_connection = True
                self._reply(e.status, {"error": str(e)})
                return None
            return self.rfile.read(length)

        def _route(self) -> str:
            path = urlsplit(self.path).path
            return path[len(coord.PREFIX):] if path.startswith(coord.PREFIX + "/") else ""

        def do_POST(self) -> None:
            if self._route() == "/v1/join":
                return self._join()
            if self._route() == "/relayed":
                return self._relayed()
            if self._route() != "/register":
                return self._reply(404, {"error": f"no such endpoint {self.path}"})
            raw, msg = self._message(coord.validate_registration)
            if msg is None:
                return
            problem = state.refusal("register", self.headers, raw)
            if not problem and (self.headers["X-Mesh-Node"], self.headers["X-Mesh-IP"]) != (msg["node"], msg["mesh_ip"]):
                problem = "the signed node and mesh IP differ from the registration's"
            if problem:
                log.warning("refused registration of %r at %s: %s", msg["node"], msg["mesh_ip"], problem)
                return self._reply(403, {"error": problem})
            reg = Registration(msg["node"], msg["mesh_ip"], msg["public_key"], tuple(msg.get("lan_endpoints", [])))
            try:
                changed = state.registry.register(reg)
            except Conflict as e:
                return self._reply(409, {"error": str(e)})
            state.http_ip[reg.node] = self.client_address[0]
            if changed:
                log.info("registered %s at %s", reg.node, reg.mesh_ip)
                state.bump()
            self._reply(200, {"edge": state.edge_info, "cidr": state.cidr})

        def _message(self, validate) -> tuple[bytes, dict | None]:
            """(raw body, its JSON object), or (.., None) after answering why it is refused."""
            raw = self._body()
            if raw is None:
                return b"", None
            try:
                msg = json.loads(raw or b"{}")
            except ValueError:
                self._reply(400, {"error": "body is not JSON"})
                return raw, None
            why = validate(msg) if isinstance(msg, dict) else "body must be an object"
            if why:
                self._reply(400, {"error": why})
                return raw, None
            return raw, msg

        def _relayed(self) -> None:
            raw, msg = self._message(coord.validate_relayed)
            if msg is None:
                return
            problem = state.refusal("relayed", self.headers, raw)
            if problem:
                return self._reply(403, {"error": problem})
            reg = state.registry.get(self.headers["X-Mesh-Node"])
            if reg is None or reg.mesh_ip != self.headers["X-Mesh-IP"]:
                return self._reply(404, {"error": "not registered at this mesh IP; POST /register first"})
            if state.set_relayed(reg.node, msg["relayed"]):
                log.info("%s reaches %s only through the edge", reg.node, ", ".join(msg["relayed"]) or "no peer")
            self._reply(200, {})

        def _join(self) -> None:
            raw = self._body()
            if raw is None:
                return
            status, body = joinproxy.forward(state.registry.all(), raw)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            route = self._route()
            if route not in ("/peers", "/relay"):
                return self._reply(404, {"error": f"no such endpoint {self.path}"})
            if self._body() is None:  # a GET carries no body; one that declares a bad length is refused
                return
            problem = state.refusal(route.strip("/"), self.headers)
            if problem:
                return self._reply(403, {"error": problem})
            reg = state.registry.get(self.headers["X-Mesh-Node"])
            if reg is None or reg.mesh_ip != self.headers["X-Mesh-IP"]:
                return self._reply(404, {"error": "not registered at this mesh IP; POST /register first"})
            state.http_ip[reg.node] = self.client_address[0]
            if route == "/peers":
                return self._peers(reg)
            self._relay(reg)

        def _peers(self, reg: Registration) -> None:
            query = parse_qs(urlsplit(self.path).query)
            try:
                since = int(query.get("since", ["0"])[0])
                wait = min(float(query.get("wait", ["0"])[0]), MAX_WAIT)
            except ValueError:
                return self._reply(400, {"error": "since must be an integer and wait a number of seconds"})
            with state.cond:
                # `since` ahead of us is from another run of this service (a clock stepped back)
                state.cond.wait_for(lambda: state.version != since, timeout=wait)
                body = state.snapshot(reg.node)
            if body is None:  # revoked (or forgotten) while it waited
                return self._reply(403, {"error": state.refusal("peers", self.headers) or
                                         "no longer registered; POST /register again"})
            self._reply(200, body)

        def _relay(self, reg: Registration) -> None:
            if self.headers.get("Upgrade", "").lower() != relay.UPGRADE_TOKEN:
                return self._reply(400, {"error": f"send Upgrade: {relay.UPGRADE_TOKEN}"})
            self.send_response(101)
            self.send_header("Connection", "Upgrade")
            self.send_header("Upgrade", relay.UPGRADE_TOKEN)
            self.end_headers()
            self.wfile.flush()
            remote = self.client_address[0]
            self.connection.settimeout(None)  # a relay stream may idle between datagrams

            def opened(port: int) -> None:
                state.relay_ports[port] = (reg.node, remote)
                log.info("relay stream open for %s (loopback port %d)", reg.node, port)

            def closed(port: int) -> None:
                state.relay_ports.pop(port, None)
                log.info("relay stream closed for %s", reg.node)

            relay.serve_session(self.rfile, self.connection, wg_port, opened, closed)
            self.close_connection = True

    return Handler


def udp_echo(sock: socket.socket, stop: threading.Event) -> None:
    """Answer reachability probes (same size back, so it cannot amplify)."""
    sock.settimeout(1.0)
    while not stop.is_set():
        try:
            data, addr = sock.recvfrom(64)
        except socket.timeout:
            continue
        except OSError:
            return
        if data.startswith(coord.PROBE_MAGIC):
            try:
                sock.sendto(data, addr)
            except OSError:
                pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that went away mid-answer (long polls do) is not worth a traceback."""
        log.debug("connection from %s ended with an error", client_address[0], exc_info=True)


class MeshService:
    """The running HTTP service and its UDP echo."""

    def __init__(self, state: CoordState, host: str, port: int, wg_port: int):
        self.http = QuietServer((host, port), make_handler(state, wg_port))
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((host, self.http.server_address[1]))
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.http.serve_forever, name="mesh-http", daemon=True),
                        threading.Thread(target=udp_echo, args=(self.udp, self.stop), name="mesh-echo", daemon=True)]

    @property
    def port(self) -> int:
        return self.http.server_address[1]

    def start(self) -> "MeshService":
        for t in self.threads:
            t.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.http.shutdown()
        self.http.server_close()
        self.udp.close()
