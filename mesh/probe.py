"""Round-trip times over the overlay: one ICMP echo per peer, all peers at once.

The echo goes out of a raw socket of this process (root, or CAP_NET_RAW), connected to the
peer so the kernel hands it only that peer's packets: no `ping` process per echo. Without
the capability, `ping` (setuid or file-capable) sends it instead."""

from __future__ import annotations

import os
import re
import select
import socket
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

PING_WAIT = 1  # seconds; a peer slower than this over the overlay counts as unanswered
TIME_RE = re.compile(r"time=([0-9.]+) ms")
ECHO_REQUEST, ECHO_REPLY = 8, 0


def echo(ip: str, timeout: float) -> float | None:
    """RTT in ms of one ICMP echo to `ip` from a raw socket, None if no reply came within
    `timeout` or there is no route. PermissionError without CAP_NET_RAW."""
    ident, seq = int.from_bytes(os.urandom(2), "big"), int.from_bytes(os.urandom(2), "big")
    payload = os.urandom(16)
    packet = echo_packet(ident, seq, payload)
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.setblocking(False)
        deadline = time.monotonic() + timeout
        try:
            s.connect((ip, 0))
            sent = time.monotonic()
            s.send(packet)
        except PermissionError:
            raise
        except OSError:  # no route, an unreachable neighbour: a miss, as a timed-out reply
            return None
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([s], [], [], left)[0]:
                return None
            try:
                data = s.recv(2048)
            except OSError:  # an ICMP error about our echo (host unreachable)
                return None
            if is_reply(data, ident, seq, payload):
                return (time.monotonic() - sent) * 1000
    return None


def echo_packet(ident: int, seq: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(header + payload), ident, seq) + payload


def is_reply(datagram: bytes, ident: int, seq: int, payload: bytes) -> bool:
    """Whether an IPv4 datagram (as a raw socket reads it: with its IP header) is the echo
    reply to (ident, seq) carrying `payload`."""
    if len(datagram) < 20:
        return False
    icmp = datagram[(datagram[0] & 0x0F) * 4:]
    if len(icmp) < 8:
        return False
    kind, _, _, got_ident, got_seq = struct.unpack("!BBHHH", icmp[:8])
    return kind == ECHO_REPLY and (got_ident, got_seq) == (ident, seq) and icmp[8:] == payload


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ping(ip: str) -> float | None:
    """RTT in ms of one echo to `ip`, None if it went unanswered."""
    try:
        return echo(ip, PING_WAIT)
    except PermissionError:
        pass
    proc = subprocess.run(["ping", "-n", "-c", "1", "-W", str(PING_WAIT), ip], capture_output=True, text=True)
    m = TIME_RE.search(proc.stdout)
    return float(m.group(1)) if proc.returncode == 0 and m else None


def ping_all(ips: list[str]) -> dict[str, float | None]:
    if not ips:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(ips))) as pool:
        return dict(zip(ips, pool.map(ping, ips)))
