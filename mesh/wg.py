"""One WireGuard interface run by wireguard-go, driven through its UAPI socket.

wireguard-go creates a TUN device in the caller's network namespace and listens for
configuration on /var/run/wireguard/<interface>.sock. That directory is shared by every
network namespace of a host, so each interface needs a name unique on the host.

UAPI (wireguard.com/xplatform), one request per connection, lines of key=value:

    -> get=1\\n\\n
    <- private_key=<hex>\\n listen_port=<n>\\n
       public_key=<hex>\\n endpoint=<ip:port>\\n last_handshake_time_sec=<n>\\n
       rx_bytes=<n>\\n tx_bytes=<n>\\n persistent_keepalive_interval=<n>\\n allowed_ip=<cidr>\\n ...
       errno=0\\n\\n
    -> set=1\\n private_key=<hex>\\n listen_port=<n>\\n
       public_key=<hex>\\n [remove=true | endpoint=.. persistent_keepalive_interval=..
       replace_allowed_ips=true allowed_ip=..]\\n ... \\n
    <- errno=0\\n\\n
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

UAPI_DIR = Path("/var/run/wireguard")
# wireguard-go creates its socket a few ms after start; a loaded host may take longer.
START_TIMEOUT = 10.0
UAPI_TIMEOUT = 5.0
MAX_IFNAME = 15
# The Go scheduler threads wireguard-go runs on (GOMAXPROCS). Idle, a mesh carries a steady
# trickle of small packets (Raft heartbeats, lease renewals, peer probes): each one woke an
# idle scheduler thread on another core to hand it between goroutines. One thread carries
# that trickle at about half the CPU (bench/wg_procs.py) and still moves what a home link
# moves; a machine that replicates over a faster one can set VCAPP_WG_GOMAXPROCS.
GOMAXPROCS = os.environ.get("VCAPP_WG_GOMAXPROCS", "1")


class WgError(RuntimeError):
    """wireguard-go could not be started or refused a configuration."""


@dataclass
class PeerState:
    public_key: str  # hex
    endpoint: str | None = None
    last_handshake: float = 0.0  # unix time, 0 = never
    rx_bytes: int = 0
    tx_bytes: int = 0
    keepalive: int = 0
    allowed_ips: list[str] = field(default_factory=list)


@dataclass
class DeviceState:
    listen_port: int = 0
    peers: dict[str, PeerState] = field(default_factory=dict)  # hex public key -> state


@dataclass
class PeerConfig:
    public_key: str  # hex
    endpoint: str | None = None
    keepalive: int | None = None
    allowed_ips: list[str] | None = None  # None = leave as is
    remove: bool = False
    kick: bool = False  # turn keepalive off and on again: wireguard-go then sends at once


def socket_path(ifname: str) -> Path:
    return UAPI_DIR / f"{ifname}.sock"


def check_ifname(ifname: str) -> None:
    if not ifname or len(ifname) > MAX_IFNAME or "/" in ifname:
        raise WgError(f"interface name {ifname!r}: use 1-{MAX_IFNAME} characters without '/'")


def _request(ifname: str, text: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(UAPI_TIMEOUT)
        try:
            s.connect(str(socket_path(ifname)))
        except OSError as e:
            raise WgError(f"cannot reach wireguard-go for {ifname} ({e}); is `vcapp mesh up` running?") from None
        s.sendall(text.encode())
        buf = b""
        while not buf.endswith(b"\n\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    reply = buf.decode()
    errno = [line for line in reply.splitlines() if line.startswith("errno=")]
    if not errno or errno[-1] != "errno=0":
        raise WgError(f"wireguard-go {ifname} refused the request: {errno[-1] if errno else reply!r}")
    return reply


def alive(ifname: str) -> bool:
    try:
        _request(ifname, "get=1\n\n")
        return True
    except WgError:
        return False


def get(ifname: str) -> DeviceState:
    dev, peer = DeviceState(), None
    for line in _request(ifname, "get=1\n\n").splitlines():
        key, _, value = line.partition("=")
        if key == "listen_port":
            dev.listen_port = int(value)
        elif key == "public_key":
            peer = dev.peers[value] = PeerState(value)
        elif peer is None:
            continue
        elif key == "endpoint":
            peer.endpoint = value
        elif key == "last_handshake_time_sec":
            peer.last_handshake += int(value)
        elif key == "last_handshake_time_nsec":
            peer.last_handshake += int(value) / 1e9
        elif key == "rx_bytes":
            peer.rx_bytes = int(value)
        elif key == "tx_bytes":
            peer.tx_bytes = int(value)
        elif key == "persistent_keepalive_interval":
            peer.keepalive = int(value)
        elif key == "allowed_ip":
            peer.allowed_ips.append(value)
    return dev


def set_device(ifname: str, private_key: bytes | None = None, listen_port: int | None = None,
               peers: list[PeerConfig] = ()) -> None:
    lines = ["set=1"]
    if private_key is not None:
        lines.append(f"private_key={private_key.hex()}")
    if listen_port is not None:
        lines.append(f"listen_port={listen_port}")
    for p in peers:
        lines.append(f"public_key={p.public_key}")
        if p.remove:
            lines.append("remove=true")
            continue
        if p.endpoint:
            lines.append(f"endpoint={p.endpoint}")
        if p.kick:
            lines.append("persistent_keepalive_interval=0")
        if p.keepalive is not None:
            lines.append(f"persistent_keepalive_interval={p.keepalive}")
        if p.allowed_ips is not None:
            lines.append("replace_allowed_ips=true")
            lines.extend(f"allowed_ip={cidr}" for cidr in p.allowed_ips)
    if len(lines) > 1:
        _request(ifname, "\n".join(lines) + "\n\n")


def start(ifname: str, log: Path | None = None) -> subprocess.Popen | None:
    """Start wireguard-go for `ifname` unless one already serves it (a restarted daemon
    adopts the interface it left). Returns the child, or None when adopted."""
    check_ifname(ifname)
    if alive(ifname):
        return None
    env = dict(os.environ, WG_PROCESS_FOREGROUND="1", LOG_LEVEL="error", GOMAXPROCS=GOMAXPROCS)
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(["wireguard-go", "-f", ifname], env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT)
    except FileNotFoundError:
        raise WgError("wireguard-go is not installed; run scripts/install (Debian package wireguard-go)") from None
    finally:
        if log:
            out.close()
    deadline = time.monotonic() + START_TIMEOUT
    while not alive(ifname):
        if proc.poll() is not None:
            raise WgError(f"wireguard-go {ifname} exited with {proc.returncode}; see {log or 'its output'}")
        if time.monotonic() > deadline:
            proc.kill()
            raise WgError(f"wireguard-go {ifname} did not open its UAPI socket within {START_TIMEOUT:.0f}s")
        time.sleep(0.05)
    return proc


def configure_address(ifname: str, cidr: str) -> None:
    """Give the interface its overlay address (the prefix routes the whole overlay to it)."""
    for cmd in (["ip", "addr", "replace", cidr, "dev", ifname], ["ip", "link", "set", ifname, "up"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise WgError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
