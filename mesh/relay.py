"""The TCP relay (DERP-style): WireGuard datagrams carried over an HTTP-upgraded stream.

For a machine whose site drops outbound UDP, the agent runs a small UDP<->TCP shim on
127.0.0.1: wireguard-go uses the shim's address as the edge's endpoint, the shim frames each
datagram onto one TCP stream to the edge, and the edge hands them to its own WireGuard UDP
port from a per-session loopback socket (so the edge's WireGuard sees that machine at
127.0.0.1:<session port>). Being a normal HTTP Upgrade, the stream passes reverse proxies.

Opening (client -> edge), then the edge answers 101 and both sides switch to frames:

    GET /_mesh/relay HTTP/1.1
    Host: <edge>
    Connection: Upgrade
    Upgrade: vcapp-mesh-relay
    X-Mesh-Node, X-Mesh-IP, X-Mesh-Time, X-Mesh-Proof   (action "relay", see mesh/auth.py)

    HTTP/1.1 101 Switching Protocols
    Upgrade: vcapp-mesh-relay

Frames, both directions:

    0               1               2
    +---------------+---------------+======================+
    |    length (u16, big-endian)   |  one UDP datagram    |   length 0 = keepalive, ignored
    +---------------+---------------+======================+
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
import time
from typing import BinaryIO, Callable
from urllib.parse import urlsplit

UPGRADE_TOKEN = "vcapp-mesh-relay"
HEADER = struct.Struct("!H")
MAX_DATAGRAM = 65535
# After the edge drops the stream (restart, network blip) try again soon: the relay is
# the only path left for this machine when it is in use.
RECONNECT_DELAY = 1.0
CONNECT_TIMEOUT = 5.0

log = logging.getLogger("mesh.relay")


class RelayError(RuntimeError):
    """The relay stream could not be opened; the message says why."""


def frame(datagram: bytes) -> bytes:
    if len(datagram) > MAX_DATAGRAM:
        raise ValueError(f"datagram of {len(datagram)} bytes does not fit a relay frame")
    return HEADER.pack(len(datagram)) + datagram


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next datagram from the stream, b"" for a keepalive, None at end of stream."""
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    (length,) = HEADER.unpack(head)
    data = stream.read(length) if length else b""
    return data if len(data) == length else None


def pump_stream_to_udp(stream: BinaryIO, udp: socket.socket, send: Callable[[bytes], None]) -> None:
    """Copy frames from the stream to UDP until the stream ends."""
    while (data := read_frame(stream)) is not None:
        if data:
            try:
                send(data)
            except OSError:
                pass  # the local WireGuard socket is not there (yet): drop, as UDP would


def pump_udp_to_stream(udp: socket.socket, conn: socket.socket, stop: threading.Event) -> None:
    """Copy datagrams from a connected UDP socket onto the stream until either side closes."""
    while not stop.is_set():
        try:
            data = udp.recv(MAX_DATAGRAM)
            conn.sendall(frame(data))
        except socket.timeout:
            continue
        except OSError:
            break
    stop.set()


# ---- edge side ---------------------------------------------------------------------------

def serve_session(rfile: BinaryIO, conn: socket.socket, wg_port: int, on_open: Callable[[int], None],
                  on_close: Callable[[int], None]) -> None:
    """Carry one machine's stream to the edge's WireGuard port until it ends."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.connect(("127.0.0.1", wg_port))
    udp.settimeout(1.0)
    port = udp.getsockname()[1]
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stop = threading.Event()
    on_open(port)
    back = threading.Thread(target=pump_udp_to_stream, args=(udp, conn, stop), daemon=True)
    back.start()
    try:
        pump_stream_to_udp(rfile, udp, udp.send)
    finally:
        stop.set()
        on_close(port)
        back.join(timeout=2)
        udp.close()


# ---- machine side ------------------------------------------------------------------------

def open_stream(base_url: str, headers: dict[str, str]) -> tuple[socket.socket, BinaryIO]:
    """Connect to the edge (http, or https through a TLS proxy) and upgrade to a relay stream."""
    url = urlsplit(base_url)
    if url.scheme not in ("http", "https"):
        raise RelayError(f"relay over {url.scheme!r} is not supported; give an http(s):// coordination URL")
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    conn = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    if url.scheme == "https":
        conn = ssl.create_default_context().wrap_socket(conn, server_hostname=host)
    lines = [f"GET {url.path.rstrip('/')}/relay HTTP/1.1", f"Host: {url.netloc}", "Connection: Upgrade",
             f"Upgrade: {UPGRADE_TOKEN}", *(f"{k}: {v}" for k, v in headers.items())]
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    rfile = conn.makefile("rb")
    status = rfile.readline().decode("latin-1").strip()
    while rfile.readline() not in (b"\r\n", b"\n", b""):
        pass
    if " 101 " not in f"{status} ":
        conn.close()
        raise RelayError(f"the edge refused the relay stream: {status or 'no answer'}")
    conn.settimeout(None)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn, rfile


class RelayShim:
    """A UDP socket on 127.0.0.1 that wireguard-go talks to as if it were the edge."""

    def __init__(self, base_url: str, headers: Callable[[], dict[str, str]], wg_port: int):
        self.base_url, self.headers, self.wg_port = base_url, headers, wg_port
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.connect(("127.0.0.1", wg_port))
        self.udp.settimeout(1.0)
        self.stop = threading.Event()
        self.connected = threading.Event()
        self.last_error = ""
        self.thread = threading.Thread(target=self._run, name="relay-shim", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.udp.getsockname()[1]}"

    def start(self) -> "RelayShim":
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=3)
        self.udp.close()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, rfile = open_stream(self.base_url, self.headers())
            except (OSError, RelayError) as e:
                self.last_error = str(e)
                log.warning("relay stream: %s; retrying in %.0fs", e, RECONNECT_DELAY)
                self.stop.wait(RECONNECT_DELAY)
                continue
            self.connected.set()
            session_stop = threading.Event()
            back = threading.Thread(target=pump_udp_to_stream, args=(self.udp, conn, session_stop), daemon=True)
            back.start()
            reader = threading.Thread(target=pump_stream_to_udp, args=(rfile, self.udp, self.udp.send), daemon=True)
            reader.start()
            while not self.stop.is_set() and not session_stop.is_set() and reader.is_alive():
                time.sleep(0.2)
            self.connected.clear()
            session_stop.set()
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
            back.join(timeout=2)
