"""Where an edge sends each hostname, told to its Caddy as DNS answers.

The edge's Caddy config names no app (router/edge_config.py): a request for an app's
hostname H goes to the node routers that a lookup of "H.ZONE" answers (Caddy's dynamic `a`
upstreams, cached REFRESH), and this module answers it on loopback from a file the edge
writes (`answers`). A new app, a deploy or a move then changes an answer, never Caddy's
config: no reload, and no request lost to one (each reload closes a few requests in flight:
bench/edge_reload_bench.py).

    answers(routes) -> {"hosts": {hostname: [ip, ...]}, "default": [ip, ...]}     pure
    respond(query bytes, answers) -> reply bytes                                   pure
    python -m router.edge_dns ANSWERS PORT_FILE [--port N]                         the server
    DnsProcess(workdir, launcher)                                                  runs it

An app's hostnames (its own and its custom domains) get the routers of the machines running
it that are not down; an app running nowhere, an unknown name, or an app whose routers are all
down gets `default`: every router not down (each one forwards, or answers the app's "not
running" page). The server runs as its own process, started like Caddy (the same launcher:
in the simulator, inside the edge's network namespace), and exits when its parent does.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from router.caddy import Launcher, default_launcher, stop_process
from router.routes import EdgeRoutes, app_host

ZONE = "routes.vcapp.invalid"  # RFC 2606: never a real name
# Caddy asks again for a hostname's routers this often while it serves the hostname (and
# at once after a failed try): a move reaches the edge's requests within a second of the
# edge's table.
REFRESH = "1s"
# The answers are read from loopback: a reply takes well under a millisecond.
LOOKUP_TIMEOUT = "1s"
TTL = 1
ANSWERS_FILE, PORT_FILE = "dns-answers.json", "dns-port"
START_TIMEOUT = 10.0  # a python process binds a UDP port in well under a second


def lookup_name() -> str:
    """The name Caddy looks up for a request (its Host, absolute: no search domains)."""
    return f"{{http.request.host}}.{ZONE}."


def router_port(nodes: tuple[str, ...]) -> int | None:
    """The one port every node router listens on (an answer carries addresses only); None
    when they differ or one is not host:port (then the edge sends to any router)."""
    ports = {n.rpartition(":")[2] for n in nodes}
    if len(ports) != 1 or any(n.startswith("unix/") for n in nodes):
        return None
    port = ports.pop()
    return int(port) if port.isdigit() else None


def _ips(routers: list[str] | tuple[str, ...]) -> list[str]:
    out = []
    for r in routers:
        try:
            out.append(str(ipaddress.IPv4Address(r.rpartition(":")[0])))
        except ValueError:
            continue  # a name: Caddy dials it from the config's static list instead
    return sorted(set(out))


def answers(routes: EdgeRoutes) -> dict:
    """Each served hostname's routers (see the module's docstring)."""
    down = set(routes.down)
    up = [n for n in routes.nodes if n not in down] or list(routes.nodes)
    default = _ips(up)
    custom = dict(routes.domains)
    hosts: dict[str, list[str]] = {}
    for app, routers in routes.placed:
        running = _ips([r for r in routers if r not in down])
        if running:
            for host in (app_host(app, routes.domain), *custom.get(app, ())):
                hosts[host] = running
    return {"hosts": hosts, "default": default}


def respond(query: bytes, table: dict) -> bytes | None:
    """The reply to one DNS query: A records of the hostname's routers for "HOST.ZONE" (none
    for AAAA), REFUSED for a name outside the zone; None for bytes that are no DNS query."""
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
    if question.qtype in (QTYPE.A, QTYPE.ANY):
        host = name[:-len(suffix)]
        for ip in table.get("hosts", {}).get(host) or table.get("default") or ():
            reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(ip), ttl=TTL))
    return reply.pack()


class _Table:
    """The answers file, read again when it changes (the edge replaces it whole)."""

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
        sock.bind(("127.0.0.1", 0))  # the old port is taken: the edge's config follows the new one
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(sock.getsockname()[1]))
    os.replace(tmp, port_file)
    sock.settimeout(1.0)
    table = _Table(answers_path)
    while os.getppid() == parent:
        try:
            data, peer = sock.recvfrom(4096)
        except socket.timeout:
            continue
        reply = respond(data, table.current())
        if reply is not None:
            sock.sendto(reply, peer)


class DnsProcess:
    """The answers server of one edge, its files in `workdir`."""

    def __init__(self, workdir: str | Path, launcher: Launcher | None = None):
        self.workdir = Path(workdir)
        self.launcher = launcher or default_launcher
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.written: dict | None = None

    @property
    def answers_file(self) -> Path:
        return self.workdir / ANSWERS_FILE

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> str:
        """Start the server (again on the same port when it ran before); its address."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        port_file = self.workdir / PORT_FILE
        port_file.unlink(missing_ok=True)
        if not self.answers_file.exists():
            self.write({"hosts": {}, "default": []})
        argv = [sys.executable, "-m", "router.edge_dns", str(self.answers_file.resolve()), str(port_file.resolve()),
                "--port", str(self.port)]
        self.proc = self.launcher(argv, self.workdir / "dns.log")
        deadline = time.monotonic() + START_TIMEOUT
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the edge's DNS answers server did not start; see {self.workdir / 'dns.log'}")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        return self.address

    def write(self, table: dict) -> None:
        """Replace the answers (the server reads them at its next query)."""
        if table == self.written:
            return
        tmp = self.answers_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(table, sort_keys=True))
        os.replace(tmp, self.answers_file)
        self.written = table

    def stop(self) -> None:
        stop_process(self.proc)


def main() -> None:
    parser = argparse.ArgumentParser(description="An edge's DNS answers server (router/edge_dns.py)")
    parser.add_argument("answers", type=Path)
    parser.add_argument("port_file", type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    serve(args.answers, args.port_file, args.port)


if __name__ == "__main__":
    main()
