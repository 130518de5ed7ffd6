"""The edge daemon: the mesh's hub WireGuard peer plus its coordination/relay service.

The edge is a WireGuard peer of every registered machine (AllowedIPs = that machine's /32,
keepalive every heartbeat) and forwards between them, which is the relay path: a machine
that cannot reach a peer directly routes that peer's /32 to the edge. The source ip:port
the edge's WireGuard sees for each machine is that machine's NAT mapping; the daemon
publishes it through the coordination service (mesh/server.py) every ENDPOINT_POLL, and
reads the mesh IPs the cluster revoked (mesh/registry.py REVOKED_FILE) as often: a removed
machine's credential is refused, and its peer dropped, within one poll of the file changing.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mesh import keys, paths, server, status, wg
from mesh.registry import Registry, read_revoked, revoked_path

EDGE_MESH_IP = "100.96.0.1"
MESH_CIDR = "100.96.0.0/16"
WG_PORT = 51820
# How often the edge reads its WireGuard endpoints and publishes changes: a roaming
# machine's new address reaches the others within this plus one long-poll answer.
ENDPOINT_POLL = 1.0
# An endpoint whose last handshake is older than this is stale (WireGuard rejects a
# session after 180 s; live peers re-handshake every 120 s).
ENDPOINT_FRESH = 180.0

log = logging.getLogger("mesh.edge")


@dataclass
class EdgeConfig:
    mesh_key: bytes
    interface: str
    data_dir: Path
    run_dir: Path
    listen_host: str = "0.0.0.0"
    listen_port: int = 8443
    wg_port: int = WG_PORT
    mesh_ip: str = EDGE_MESH_IP
    cidr: str = MESH_CIDR


def enable_forwarding(ifname: str) -> None:
    """Let the edge route overlay packets between machines (hub relay)."""
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    rule = ["FORWARD", "-i", ifname, "-o", ifname, "-j", "ACCEPT"]
    if subprocess.run(["iptables", "-w", "-C", *rule], capture_output=True).returncode != 0:
        subprocess.run(["iptables", "-w", "-I", *rule], capture_output=True, check=True)


class Edge:
    def __init__(self, cfg: EdgeConfig):
        wg.check_ifname(cfg.interface)
        self.cfg = cfg
        mesh_dir = cfg.data_dir / "mesh"
        self.private = keys.load_or_create(mesh_dir)
        self.public_b64 = keys.b64(keys.public_of(self.private))
        self.registry = Registry(mesh_dir / "edge-registry.json")
        self.revoked_file = revoked_path(mesh_dir / "edge-registry.json")
        # `epoch` changes with every start: a machine that sees a new one drops its WireGuard
        # session with this edge and handshakes at once (mesh/meshd.py) instead of waiting
        # the 15 s WireGuard takes to notice a peer that lost its sessions.
        info = {"public_key": self.public_b64, "mesh_ip": cfg.mesh_ip, "wg_port": cfg.wg_port,
                "probe_port": cfg.listen_port, "epoch": secrets.token_hex(8)}
        self.state = server.CoordState(cfg.mesh_key, self.registry, info, cfg.cidr)
        self.follow_revocations()
        self.service: server.MeshService | None = None
        self.wg_proc: subprocess.Popen | None = None

    def follow_revocations(self) -> None:
        """Take in the revoked mesh IPs the cluster published (a damaged file keeps the last)."""
        try:
            revoked = read_revoked(self.revoked_file)
        except (ValueError, OSError) as e:
            log.error("cannot read the revoked mesh IPs: %s; keeping the %d known", e, len(self.state.revoked))
            return
        if revoked != self.state.revoked:
            for node in self.state.revoke(revoked):
                log.info("%s was removed from the cluster: its mesh credential is refused", node)

    def reconcile(self) -> None:
        self.follow_revocations()
        dev = wg.get(self.cfg.interface)
        regs = {keys.from_b64(r.public_key).hex(): r for r in self.registry.all()}
        configs = []
        for hexkey, reg in regs.items():
            st, allowed = dev.peers.get(hexkey), [f"{reg.mesh_ip}/32"]
            if st is None or st.allowed_ips != allowed:
                configs.append(wg.PeerConfig(hexkey, keepalive=paths.HEARTBEAT, allowed_ips=allowed))
        configs += [wg.PeerConfig(k, remove=True) for k in dev.peers if k not in regs]
        wg.set_device(self.cfg.interface, peers=configs)
        now = time.time()
        endpoints = {}
        for hexkey, reg in regs.items():
            st = dev.peers.get(hexkey)
            fresh = st and st.endpoint and st.last_handshake and now - st.last_handshake < ENDPOINT_FRESH
            endpoints[reg.node] = st.endpoint if fresh else None
        self.state.observe(endpoints)
        self._write_status(dev, regs)

    def _write_status(self, dev: wg.DeviceState, regs: dict) -> None:
        rows = []
        for hexkey, reg in regs.items():
            st = dev.peers.get(hexkey)
            seen = self.state.seen.get(reg.node)
            rows.append({"node": reg.node, "mesh_ip": reg.mesh_ip,
                         "path": seen.transport if seen and seen.transport else None,
                         "endpoint": st.endpoint if st else None,
                         "last_handshake": (st.last_handshake or None) if st else None, "rtt_ms": None,
                         "rx_bytes": st.rx_bytes if st else 0, "tx_bytes": st.tx_bytes if st else 0})
        status.write({"node": "edge", "role": "edge", "mesh_ip": self.cfg.mesh_ip, "interface": self.cfg.interface,
                      "listen_port": dev.listen_port, "public_key": self.public_b64,
                      "public_endpoint": None, "coordination_port": self.service.port if self.service else None,
                      "edge": None, "peers": rows, "updated": time.time()}, self.cfg.run_dir)

    def start(self) -> None:
        self.cfg.run_dir.mkdir(parents=True, exist_ok=True)
        self.wg_proc = wg.start(self.cfg.interface, log=self.cfg.run_dir / "wireguard-go.log")
        wg.set_device(self.cfg.interface, private_key=self.private, listen_port=self.cfg.wg_port)
        prefix = ipaddress.IPv4Network(self.cfg.cidr).prefixlen
        wg.configure_address(self.cfg.interface, f"{self.cfg.mesh_ip}/{prefix}")
        enable_forwarding(self.cfg.interface)
        self.service = server.MeshService(self.state, self.cfg.listen_host, self.cfg.listen_port, self.cfg.wg_port).start()
        log.info("edge up: %s on %s, WireGuard port %d, coordination on %s:%d", self.cfg.mesh_ip,
                 self.cfg.interface, self.cfg.wg_port, self.cfg.listen_host, self.service.port)

    def run(self, stop) -> None:
        self.start()
        try:
            while not stop.is_set():
                try:
                    self.reconcile()
                except wg.WgError as e:
                    log.error("%s", e)
                stop.wait(ENDPOINT_POLL)
        finally:
            self.close()

    def close(self) -> None:
        if self.service:
            self.service.close()
        if self.wg_proc and self.wg_proc.poll() is None:
            self.wg_proc.terminate()
            self.wg_proc.wait(timeout=5)
