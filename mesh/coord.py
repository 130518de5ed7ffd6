"""The coordination protocol between machines and the edge: messages and the client.

JSON over plain HTTP under a path prefix (default /_mesh), so the edge's Caddy can front it.
Every request proves the machine's join with the X-Mesh-* headers drawn in mesh/auth.py
(a proof over the action, time and body; the credential itself is never sent).

    POST <base>/register
      -> {"node": "home-1", "mesh_ip": "100.96.1.1", "public_key": "<base64>",
          "lan_endpoints": ["10.1.0.11:41641"]}
      <- 200 {"edge": {"public_key": "<base64>", "mesh_ip": "100.96.0.1", "wg_port": 51820,
                       "probe_port": 8443}, "cidr": "100.96.0.0/16"}
      <- 400 malformed | 403 proof does not verify | 409 mesh IP or key held by another node

    POST <base>/relayed    (whenever it changes: the peers this machine reaches only through the
      -> {"relayed": ["100.96.1.2"]}   edge by its own measurement; mesh/paths.py routed_direct)
      <- 200 {} | 400 malformed | 403 proof does not verify | 404 not registered

    GET <base>/peers?since=<version>&wait=<seconds>      (long poll: answers at once if the
      <- 200 {"version": 7,                               version is not `since`, else when it
              "self": <peer>, "peers": [<peer>, ...],     changes or `wait` runs out; versions
              "edge": {...as in /register...}}            go on across restarts of the edge)
      <- 404 not registered (register again) | 403 proof does not verify
         <peer> = {"node", "mesh_ip", "public_key", "lan_endpoints": [...],
                   "endpoint": "203.0.113.21:41641" | null,   # as the edge's WireGuard sees it
                   "public_ip": "203.0.113.21" | null,
                   "transport": "udp" | "tcp" | null,          # how it reaches the edge
                   "relayed": ["100.96.1.2", ...]}             # as it last posted /relayed

    GET <base>/relay   (HTTP Upgrade to the TCP relay, see mesh/relay.py)

    UDP probe on probe_port (the service's own port number, also when a TLS proxy fronts the
    service on 443), to learn whether UDP gets out:
      -> b"vcmesh-probe" + 8 random bytes          <- the same bytes back
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection

from mesh import auth

PREFIX = "/_mesh"
PROBE_MAGIC = b"vcmesh-probe"
PROBE_TIMEOUT = 1.0
# A long poll shorter than common proxy idle timeouts (60 s) so Caddy never cuts it.
LONG_POLL = 25.0
HTTP_TIMEOUT = 10.0
# A connection to the edge that is not made in this long is given up and tried anew: a SYN
# sent while the edge was down is otherwise resent only after 1, 2, 4... s of backoff, and the
# machine would see the edge back that much later.
CONNECT_TIMEOUT = 2.0
# A cluster has 10 machines at most; a /relayed list longer than this is not from a machine.
MAX_RELAYED = 256
# TCP keepalive on the coordination connection: after a roam (new public address) the
# router has forgotten the old flow and the edge answers a probe with a reset, so a long
# poll that can no longer be answered is noticed in seconds instead of at its timeout.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 3, 3, 3


class CoordError(RuntimeError):
    """The edge refused or did not answer; `status` is the HTTP status (0 = no answer)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Identity:
    node: str
    mesh_ip: str
    credential: str

    def headers(self, action: str, body: bytes = b"") -> dict[str, str]:
        return auth.sign(self.credential, action, self.node, self.mesh_ip, body)


def validate_registration(msg: dict) -> str | None:
    """What is wrong with a /register body, or None."""
    for name in ("node", "mesh_ip", "public_key"):
        if not isinstance(msg.get(name), str) or not msg[name]:
            return f"missing field {name!r}"
    try:
        ipaddress.IPv4Address(msg["mesh_ip"])
    except ValueError:
        return f"mesh_ip {msg['mesh_ip']!r} is not an IPv4 address"
    lan = msg.get("lan_endpoints", [])
    if not isinstance(lan, list) or not all(isinstance(e, str) and e.count(":") == 1 for e in lan):
        return "lan_endpoints must be a list of 'ip:port' strings"
    return None


def validate_relayed(msg: dict) -> str | None:
    """What is wrong with a /relayed body, or None."""
    ips = msg.get("relayed")
    if not isinstance(ips, list) or len(ips) > MAX_RELAYED or not all(isinstance(ip, str) for ip in ips):
        return f"relayed must be a list of at most {MAX_RELAYED} mesh IPs"
    for ip in ips:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            return f"relayed: {ip[:40]!r} is not an IPv4 address"
    return None


class KeepaliveAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        kwargs["socket_options"] = HTTPConnection.default_socket_options + [
            (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
            (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE),
            (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL),
            (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT),
        ]
        super().init_poolmanager(*args, **kwargs)


class Client:
    """A machine's side of the coordination protocol."""

    def __init__(self, base_url: str, identity: Identity):
        self.base = base_url.rstrip("/")
        self.identity = identity
        self.http = requests.Session()
        self.http.mount("http://", KeepaliveAdapter())
        self.http.mount("https://", KeepaliveAdapter())

    def _check(self, resp: requests.Response) -> dict:
        if resp.status_code != 200:
            try:
                why = resp.json().get("error", resp.text)
            except ValueError:
                why = resp.text.strip()
            raise CoordError(f"edge answered {resp.status_code}: {why}", resp.status_code)
        return resp.json()

    def register(self, public_key: str, lan_endpoints: list[str]) -> dict:
        body = json.dumps({"node": self.identity.node, "mesh_ip": self.identity.mesh_ip, "public_key": public_key,
                           "lan_endpoints": lan_endpoints}).encode()
        headers = {"Content-Type": "application/json", **self.identity.headers("register", body)}
        try:
            resp = self.http.post(f"{self.base}/register", data=body, headers=headers, timeout=HTTP_TIMEOUT)
        except requests.RequestException as e:
            raise CoordError(f"cannot reach the edge at {self.base}: {e}") from None
        return self._check(resp)

    def relayed(self, mesh_ips: list[str]) -> None:
        body = json.dumps({"relayed": mesh_ips}).encode()
        headers = {"Content-Type": "application/json", **self.identity.headers("relayed", body)}
        try:
            resp = self.http.post(f"{self.base}/relayed", data=body, headers=headers, timeout=HTTP_TIMEOUT)
        except requests.RequestException as e:
            raise CoordError(f"cannot reach the edge at {self.base}: {e}") from None
        self._check(resp)

    def peers(self, since: int = 0, wait: float = LONG_POLL) -> dict:
        try:
            resp = self.http.get(f"{self.base}/peers", params={"since": since, "wait": wait},
                                 headers=self.identity.headers("peers"),
                                 timeout=(CONNECT_TIMEOUT, wait + HTTP_TIMEOUT))
        except requests.RequestException as e:
            raise CoordError(f"cannot reach the edge at {self.base}: {e}") from None
        return self._check(resp)


def udp_probe(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Does a UDP datagram to the edge come back? (False when the site blocks UDP.)"""
    token = PROBE_MAGIC + os.urandom(8)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(token, (host, port))
            while True:
                data, _ = s.recvfrom(64)
                if data == token:
                    return True
        except OSError:
            return False
