"""The DNS answers server: where a router's Caddy finds the upstreams of a request, told to it
as DNS answers instead of in its config.

A router's Caddy config names no placement: its dynamic upstreams ask this server on loopback
(cached REFRESH), and the router's owner writes the answers to a file (`DnsProcess.write`). A
deploy or a move then changes an answer, never Caddy's config: no reload, and no request lost
to one (each reload closes a few requests in flight: bench/edge_reload_bench.py,
bench/router_reload_bench.py). The edge asks A records of hostnames (router/edge_dns.py); a
node router asks SRV records of its apps' instances (router/node_dns.py).

    respond(query bytes, table) -> reply bytes                                     pure
    Replies().answer(query bytes, table) -> reply bytes        respond, remembered per table
    target(ip) -> name, dial_address("name:port") -> "ip:port"                     pure
    python -m router.answers ANSWERS PORT_FILE [--port N]                          the server
    router/dnsprocess.py DnsProcess(workdir, launcher)                             runs it

A table is {"hosts": {name: [ip, ...]}, "default": [ip, ...], "srv": {name: [[port, target],
...]}}, names relative to ZONE. An A query gets the name's hosts (else `default`); a name
`target(ip)` is that address (an SRV record must name its target: Go drops numeric targets).
The server runs as its own process, started like Caddy (the same launcher: in the simulator,
inside the router's network namespace), and exits when its parent does; it imports only what
answering needs (a process on every machine).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import socket
from pathlib import Path

from dnslib import QTYPE, RCODE, RR, SRV, A, DNSRecord

ZONE = "routes.vcapp.invalid"  # RFC 2606: never a real name
# Caddy asks again for a name's answers this often while it serves it (and at once after a
# failed try): a move reaches the requests within a second of the router's table.
REFRESH_S = 1.0
REFRESH = f"{REFRESH_S:g}s"
# The answers are read from loopback: a reply takes well under a millisecond.
LOOKUP_TIMEOUT = "1s"
TTL = 1
_TARGET = re.compile(r"ip-(\d{1,3})-(\d{1,3})-(\d{1,3})-(\d{1,3})")


def target(ip: str) -> str:
    """The name an SRV record gives for address `ip` (relative to ZONE)."""
    return "ip-" + str(ipaddress.IPv4Address(ip)).replace(".", "-")


def _target_ip(name: str) -> str | None:
    match = _TARGET.fullmatch(name)
    if not match:
        return None
    try:
        return str(ipaddress.IPv4Address(".".join(match.groups())))
    except ValueError:
        return None


def dial_address(hostport: str) -> str:
    """"ip:port" of an upstream Caddy dialled by an SRV target's name; anything else as given."""
    host, sep, port = hostport.rpartition(":")
    host, suffix = host.rstrip("."), "." + ZONE  # Go's SRV targets are absolute names
    if sep and host.endswith(suffix) and (ip := _target_ip(host[:-len(suffix)])):
        return f"{ip}:{port}"
    return hostport


def respond(query: bytes, table: dict) -> bytes | None:
    """The reply to one DNS query (see the module's docstring), REFUSED for a name outside the
    zone, no record for AAAA; None for bytes that are no DNS query."""
    try:
        request = DNSRecord.parse(query)
    except Exception:  # dnslib raises its own DNSError and struct errors alike
        return None
    reply = request.reply()
    if not request.questions:
        reply.header.rcode = RCODE.FORMERR
        return reply.pack()
    question = request.questions[0]
    name = str(question.qname).rstrip(".").lower()
    suffix = "." + ZONE
    if not name.endswith(suffix):
        reply.header.rcode = RCODE.REFUSED
        return reply.pack()
    host = name[:-len(suffix)]
    if question.qtype in (QTYPE.A, QTYPE.ANY):
        ip = _target_ip(host)
        for addr in [ip] if ip else table.get("hosts", {}).get(host) or table.get("default") or ():
            reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(addr), ttl=TTL))
    if question.qtype in (QTYPE.SRV, QTYPE.ANY):
        for port, name_of in table.get("srv", {}).get(host, ()):
            reply.add_answer(RR(question.qname, QTYPE.SRV, ttl=TTL,
                                rdata=SRV(priority=0, weight=1, port=int(port), target=f"{name_of}.{ZONE}.")))
    return reply.pack()


class Replies:
    """`respond`, remembered: the same question under the same table gets the same reply but
    for the query's ID. A node router asks for an instance's address at every new connection
    to it (an app that closes each connection, like busybox httpd or gunicorn's sync workers:
    one lookup per request), so most queries are repeats, and parsing and packing each one
    is most of this server's CPU."""

    MAX = 4096  # distinct questions remembered (each a few hundred bytes); more start afresh

    def __init__(self):
        self._table: dict | None = None
        self._known: dict[bytes, bytes | None] = {}

    def answer(self, query: bytes, table: dict) -> bytes | None:
        if len(query) < 12:  # no DNS header
            return None
        if table is not self._table or len(self._known) >= self.MAX:
            self._table, self._known = table, {}
        key = bytes(query[2:])  # everything but the ID: flags, question, EDNS
        if key not in self._known:
            self._known[key] = respond(query, table)
        reply = self._known[key]
        return None if reply is None else query[:2] + reply[2:]


class _Table:
    """The answers file, read again when it changes (the owner replaces it whole)."""

    def __init__(self, path: Path):
        self.path, self.stamp, self.table = path, None, {}

    def current(self) -> dict:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
            if stamp != self.stamp:
                self.table, self.stamp = json.loads(self.path.read_text()), stamp
        except (OSError, ValueError):
            pass  # keep answering from the last good table
        return self.table


def serve(answers_path: Path, port_file: Path, port: int = 0) -> None:
    """Answer on 127.0.0.1 until the parent process goes."""
    parent = os.getppid()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.bind(("127.0.0.1", 0))  # the old port is taken: the router's config follows the new one
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(sock.getsockname()[1]))
    os.replace(tmp, port_file)
    sock.settimeout(1.0)
    table, replies = _Table(answers_path), Replies()
    while os.getppid() == parent:
        try:
            data, peer = sock.recvfrom(4096)
        except socket.timeout:
            continue
        reply = replies.answer(data, table.current())
        if reply is not None:
            sock.sendto(reply, peer)


def main() -> None:
    parser = argparse.ArgumentParser(description="A router's DNS answers server (router/answers.py)")
    parser.add_argument("answers", type=Path)
    parser.add_argument("port_file", type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    serve(args.answers, args.port_file, args.port)


if __name__ == "__main__":
    main()
