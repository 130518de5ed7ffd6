"""The machine daemon: this machine's WireGuard interface, kept converged with the mesh.

Every second (`reconcile`): observe desired (the peer list the edge hands out, refreshed by a
long poll) and actual (wireguard-go over UAPI), `decide` the peer changes, `apply` them. Per peer, a DirectLink
(mesh/paths.py) picks the endpoint to try and says whether the direct session is heard;
a heard peer gets its /32 on its own WireGuard peer (lan or direct), a quiet one has its /32
on the edge peer (the edge forwards: relay-udp, or relay-tcp when this machine reaches the
edge through the TCP shim). Whom this machine relays by its own measurement is posted to the
edge, and a peer that relays us is relayed too: the two ends of a pair must agree on its path
(mesh/paths.py routed_direct). Safe to restart at any point: everything is derived again from
the edge and from wireguard-go, which a restarted daemon adopts.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mesh import coord, keys, paths, probe, relay, status, wg

# Path decisions need a resolution well under DIRECT_TRUST (6.5 s).
RECONCILE_INTERVAL = 1.0
# The edge did not answer: try again soon; the mesh keeps running on what it knew.
COORD_RETRY = 2.0
# The peer list's long poll failed: asked again this soon, so a restarted edge is seen (and
# its new WireGuard session made) within about this long of its coming back.
POLL_RETRY = 0.5
# How often round-trip times are measured for `mesh status`.
RTT_INTERVAL = 5.0
# Listen ports are picked at random once per machine (then kept): two machines behind one
# NAT using the same port would make the NAT rewrite one of them, like a hard NAT. Below
# Linux's ephemeral range (32768+), so no outgoing connection holds it when we start.
PORT_RANGE = (20000, 32767)
PORT_FILE = "listen_port"
# A peer found routed directly with a handshake younger than this (WireGuard's session
# lifetime) is taken over as working when the daemon restarts.
ADOPT_FRESH = 180.0

log = logging.getLogger("mesh.meshd")


class _Stop(threading.Event):
    """The agent's stop, whoever sets it: also wakes the reconcile's wait (`wake`) at once."""

    def __init__(self, wake: threading.Event) -> None:
        super().__init__()
        self.wake = wake

    def set(self) -> None:
        super().set()
        self.wake.set()


class MeshAuthError(RuntimeError):
    """The edge refused this machine's registration; retrying will not help."""


@dataclass
class AgentConfig:
    coord_url: str
    node: str
    mesh_ip: str
    credential: str
    interface: str
    data_dir: Path
    run_dir: Path
    listen_port: int | None = None
    direct_retry: float = paths.DIRECT_RETRY
    edge_udp_retry: float = paths.EDGE_UDP_RETRY


def pick_port(data_dir: Path) -> int:
    path = data_dir / PORT_FILE
    if path.exists():
        return int(path.read_text())
    port = random.randint(*PORT_RANGE)
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(str(port))
    return port


def lan_endpoints(port: int, skip_if: str, cidr: str) -> list[str]:
    """ip:port for each IPv4 address of this machine outside the overlay."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    net = ipaddress.IPv4Network(cidr)
    found = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[1] in ("lo", skip_if):
            continue
        ip = fields[3].split("/")[0]
        if ipaddress.IPv4Address(ip) not in net:
            found.append(f"{ip}:{port}")
    return sorted(found)


@dataclass
class Converge:
    """What one pass decided: the peer changes for wireguard-go (the edge's first), whom this
    machine relays by its own measure, the peers it keeps, and the rows for `mesh status`."""

    edge_state: wg.PeerState | None
    wanted: set[str]
    renew_edge: bool = False  # drop the session with the edge (configs[0]) first
    configs: list[wg.PeerConfig] = field(default_factory=list)
    relayed_own: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)


class Agent:
    def __init__(self, cfg: AgentConfig):
        wg.check_ifname(cfg.interface)
        self.cfg = cfg
        self.mesh_dir = cfg.data_dir / "mesh"
        self.private = keys.load_or_create(self.mesh_dir)
        self.public_b64 = keys.b64(keys.public_of(self.private))
        self.port = cfg.listen_port or pick_port(self.mesh_dir)
        self.identity = coord.Identity(cfg.node, cfg.mesh_ip, cfg.credential)
        self.client = coord.Client(cfg.coord_url, self.identity)
        url = urlsplit(cfg.coord_url)
        self.edge_host = socket.gethostbyname(url.hostname)
        self.coord_port = url.port or (443 if url.scheme == "https" else 80)
        self.lock = threading.Lock()
        self.view_changed = threading.Event()  # wakes the reconcile: a restarted edge, or a stop
        self.stop = _Stop(self.view_changed)
        self.view: dict | None = None
        self.edge: dict = {}
        self.cidr = "100.96.0.0/16"
        self.lan: list[str] = []
        self.need_register = False
        self.links: dict[str, paths.DirectLink] = {}  # hex public key -> link
        self.labels: dict[str, str] = {}
        self.rtts: dict[str, float | None] = {}
        self.shim: relay.RelayShim | None = None
        self.edge_link: paths.EdgeLink | None = None
        self.edge_epoch: str | None = None  # the edge's start the WireGuard session belongs to
        self.wg_proc: subprocess.Popen | None = None
        self.relayed_own: list[str] | None = None  # peers not heard directly, for publish_relayed
        self.relayed_changed = threading.Event()

    # ---- registration and the peer list --------------------------------------------------

    def register(self) -> dict:
        try:
            info = self.client.register(self.public_b64, self.lan)
        except coord.CoordError as e:
            if e.status in (400, 403, 409):
                raise MeshAuthError(f"the edge refused {self.cfg.node} at {self.cfg.mesh_ip}: {e}") from None
            raise
        self.edge, self.cidr = info["edge"], info["cidr"]
        return info

    def register_until_ok(self) -> None:
        self.lan = lan_endpoints(self.port, self.cfg.interface, self.cidr)
        while not self.stop.is_set():
            try:
                self.register()
                return
            except coord.CoordError as e:
                log.warning("%s; retrying in %.0fs", e, COORD_RETRY)
                self.stop.wait(COORD_RETRY)

    def poll_peers(self) -> None:
        since, problem = 0, ""
        while not self.stop.is_set():
            try:
                lan = lan_endpoints(self.port, self.cfg.interface, self.cidr)
                if lan != self.lan or self.need_register:
                    self.lan = lan
                    self.register()
                    self.need_register = False
                view = self.client.peers(since, coord.LONG_POLL)
            except coord.CoordError as e:
                self.need_register = e.status == 404  # the edge forgot us: register again
                if str(e) != problem:  # said once, not at every retry
                    log.warning("peer list: %s", e)
                problem = str(e)
                since = 0  # the edge may have restarted: its first answer then comes at once
                self.stop.wait(POLL_RETRY)
                continue
            except MeshAuthError as e:
                log.error("%s", e)
                self.stop.wait(COORD_RETRY)
                continue
            if problem:
                log.info("peer list: the edge answers again")
                problem = ""
            with self.lock:
                before, self.view = self.view, view
            since = view["version"]
            if before and (before.get("edge") or {}).get("epoch") != (view.get("edge") or {}).get("epoch"):
                # A restarted edge: the reconcile makes the new session now, not at its next turn.
                # Only then: the path state machines count their turns (mesh/paths.py).
                self.view_changed.set()

    def publish_relayed(self) -> None:
        """Post whom this machine relays whenever the edge's record of it (our own entry in the
        peer list) differs from what reconcile measured: after a change, and again after an
        edge restart forgot it. On its own coordination session: the long poll holds the other."""
        client, problem = coord.Client(self.cfg.coord_url, self.identity), ""
        while not self.stop.is_set():
            self.relayed_changed.wait(COORD_RETRY)
            self.relayed_changed.clear()
            with self.lock:
                want, view = self.relayed_own, self.view
            if want is None or view is None or view["self"].get("relayed") == want:
                continue
            try:
                client.relayed(want)
                problem = ""
            except coord.CoordError as e:  # posted again at the next wait; said once, not every 2 s
                if str(e) != problem:
                    log.warning("relayed peers: %s", e)
                problem = str(e)

    def measure_rtts(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                view = self.view
            if view:
                ips = [self.edge["mesh_ip"]] + [p["mesh_ip"] for p in view["peers"]]
                self.rtts = probe.ping_all(ips)
            self.stop.wait(RTT_INTERVAL)

    # ---- converge --------------------------------------------------------------------------

    def _edge_endpoint(self) -> str:
        if self.edge_link.transport == "tcp":
            if self.shim is None:
                self.shim = relay.RelayShim(self.cfg.coord_url, lambda: self.identity.headers("relay"), self.port).start()
            return self.shim.endpoint
        if self.shim is not None:
            self.shim.close()
            self.shim = None
        return f"{self.edge_host}:{self.edge['wg_port']}"

    def _edge_transport(self, now: float, edge_state: wg.PeerState | None) -> bool:
        """Update how we reach the edge; True if that changed (UDP or the TCP relay)."""
        changed = self.edge_link.update(now, edge_state.rx_bytes if edge_state else 0)
        if self.edge_link.wants_probe(now):
            port = self.edge.get("probe_port", self.coord_port)
            changed = self.edge_link.probed(now, coord.udp_probe(self.edge_host, port)) or changed
        if changed:
            log.info("edge reached over %s", changed)
        return bool(changed)

    def reconcile(self) -> None:
        """One pass: observe wireguard-go and the edge's peer list, decide, apply."""
        with self.lock:
            view = self.view
        if view is None:
            return
        dev = wg.get(self.cfg.interface)
        plan = self.decide(time.monotonic(), view, dev)
        self.apply(plan, view, dev)

    def decide(self, now: float, view: dict, dev: wg.DeviceState) -> Converge:
        """The peer configs that bring the interface to the view, and the status rows. Moves
        each path's state machine (mesh/paths.py) on by what `dev` shows."""
        edge_hex = keys.from_b64(self.edge["public_key"]).hex()
        edge_state = dev.peers.get(edge_hex)
        # A new session with the edge (its peer dropped and made again: WireGuard handshakes at
        # once) when the edge restarted, and on each change of how we reach it: a session the
        # edge no longer has is otherwise kept for 15 s, and nothing gets through meanwhile.
        epoch = (view.get("edge") or {}).get("epoch")
        restarted = bool(epoch and self.edge_epoch and epoch != self.edge_epoch)
        self.edge_epoch = epoch or self.edge_epoch
        if restarted:
            log.info("the edge restarted: handshaking with it again")
        moved = self._edge_transport(now, edge_state)
        renew = edge_state is not None and (restarted or moved)
        plan = Converge(edge_state=edge_state, wanted={edge_hex}, renew_edge=renew)
        relayed = []
        for peer in view["peers"]:
            hexkey = keys.from_b64(peer["public_key"]).hex()
            plan.wanted.add(hexkey)
            cfg, row, is_relayed, direct_own = self._peer(now, view["self"], peer, hexkey, dev.peers.get(hexkey))
            if cfg:
                plan.configs.append(cfg)
            if is_relayed:
                relayed.append(f"{peer['mesh_ip']}/32")
            if not direct_own:
                plan.relayed_own.append(peer["mesh_ip"])
            plan.rows.append(row)
        plan.relayed_own.sort()
        edge_cfg = wg.PeerConfig(edge_hex)
        if moved or renew or edge_state is None:
            edge_cfg.endpoint, edge_cfg.keepalive, edge_cfg.kick = self._edge_endpoint(), paths.HEARTBEAT, True
        edge_allowed = [f"{self.edge['mesh_ip']}/32"] + relayed
        if edge_state is None or sorted(edge_state.allowed_ips) != sorted(edge_allowed) or edge_cfg.endpoint:
            edge_cfg.allowed_ips = edge_allowed
            plan.configs.insert(0, edge_cfg)
        plan.configs += [wg.PeerConfig(k, remove=True) for k in dev.peers if k not in plan.wanted]
        return plan

    def apply(self, plan: Converge, view: dict, dev: wg.DeviceState) -> None:
        self._relayed_own(plan.relayed_own)
        if plan.renew_edge:  # a fresh peer handshakes at once
            wg.set_device(self.cfg.interface, peers=[wg.PeerConfig(plan.configs[0].public_key, remove=True)])
        wg.set_device(self.cfg.interface, peers=plan.configs)
        self._links_gc(plan.wanted)
        self._write_status(view, dev, plan.edge_state, plan.rows)

    def _relayed_own(self, own: list[str]) -> None:
        with self.lock:
            changed, self.relayed_own = own != self.relayed_own, own
        if changed:
            self.relayed_changed.set()

    def _link(self, now: float, peer: dict, hexkey: str, st: wg.PeerState | None) -> paths.DirectLink:
        link = self.links.get(hexkey)
        if link is None:
            link = self.links[hexkey] = paths.DirectLink(retry=self.cfg.direct_retry)
            if st and f"{peer['mesh_ip']}/32" in st.allowed_ips and time.time() - st.last_handshake < ADOPT_FRESH:
                link.adopt(now)
        return link

    def _peer(self, now: float, me: dict, peer: dict, hexkey: str, st: wg.PeerState | None):
        """(config change or None, status row, relayed?, direct by our own measure?) for one peer."""
        link = self._link(now, peer, hexkey, st)
        cands = paths.candidates(me, peer)
        try_ep = link.update(now, cands, st.rx_bytes if st else 0, st.endpoint if st else None)
        own_alive = link.alive(now)
        alive = paths.routed_direct(own_alive, self.cfg.mesh_ip, peer)
        allowed = [f"{peer['mesh_ip']}/32"] if alive else []
        cfg, changed = wg.PeerConfig(hexkey), False
        if st is None:
            cfg.keepalive, cfg.allowed_ips, changed = paths.HEARTBEAT, allowed, True
            try_ep = try_ep or (cands[link.idx].endpoint if cands else None)
        elif sorted(st.allowed_ips) != sorted(allowed):
            cfg.allowed_ips, changed = allowed, True
        if try_ep:
            cfg.endpoint, cfg.keepalive, cfg.kick, changed = try_ep, paths.HEARTBEAT, True, True
        kind = paths.relay_kind(self.edge_link.transport, peer.get("transport"))
        label = link.path(now, st.endpoint if st else None, kind) if alive else kind
        self._log_path(peer["node"], hexkey, label)
        return (cfg if changed else None), self._row(peer, st, label, alive, try_ep), not alive, own_alive

    def _log_path(self, node: str, hexkey: str, label: str) -> None:
        if self.labels.get(hexkey) != label:
            log.info("%s: path %s -> %s", node, self.labels.get(hexkey, "none"), label)
            self.labels[hexkey] = label

    def _row(self, peer: dict, st: wg.PeerState | None, label: str, alive: bool, try_ep: str | None) -> dict:
        return {"node": peer["node"], "mesh_ip": peer["mesh_ip"], "path": label,
                "endpoint": (st.endpoint if st else None) if alive else "via edge",
                "probing": try_ep or (st.endpoint if st else None),
                "last_handshake": (st.last_handshake or None) if st else None,
                "rtt_ms": self.rtts.get(peer["mesh_ip"]),
                "rx_bytes": st.rx_bytes if st else 0, "tx_bytes": st.tx_bytes if st else 0}

    def _links_gc(self, wanted: set[str]) -> None:
        for k in [k for k in self.links if k not in wanted]:
            del self.links[k]
            self.labels.pop(k, None)

    def _write_status(self, view: dict, dev: wg.DeviceState, edge_state, rows: list[dict]) -> None:
        edge = {"mesh_ip": self.edge["mesh_ip"], "transport": self.edge_link.transport,
                "endpoint": edge_state.endpoint if edge_state else None,
                "last_handshake": (edge_state.last_handshake or None) if edge_state else None,
                "rtt_ms": self.rtts.get(self.edge["mesh_ip"]),
                "rx_bytes": edge_state.rx_bytes if edge_state else 0,
                "tx_bytes": edge_state.tx_bytes if edge_state else 0}
        status.write({"node": self.cfg.node, "role": "machine", "mesh_ip": self.cfg.mesh_ip,
                      "interface": self.cfg.interface, "listen_port": dev.listen_port,
                      "public_key": self.public_b64, "public_endpoint": view["self"].get("endpoint"),
                      "lan_endpoints": self.lan, "edge": edge, "peers": rows, "updated": time.time()},
                     self.cfg.run_dir)

    # ---- lifecycle -------------------------------------------------------------------------

    def run(self) -> None:
        """Bring the interface up, register and converge until stopped. Raises MeshAuthError
        if the edge refuses this machine (the interface it started goes down again)."""
        # The interface and its address come first, so that what binds to the mesh address
        # (etcd, the API) can start while the edge is still out of reach.
        self.cfg.run_dir.mkdir(parents=True, exist_ok=True)
        self.wg_proc = wg.start(self.cfg.interface, log=self.cfg.run_dir / "wireguard-go.log")
        try:
            wg.set_device(self.cfg.interface, private_key=self.private, listen_port=self.port)
            prefix = ipaddress.IPv4Network(self.cidr).prefixlen
            wg.configure_address(self.cfg.interface, f"{self.cfg.mesh_ip}/{prefix}")
            self.register_until_ok()
            self.edge_link = paths.EdgeLink(time.monotonic(), retry=self.cfg.edge_udp_retry)
            log.info("%s up at %s on %s, port %d", self.cfg.node, self.cfg.mesh_ip, self.cfg.interface, self.port)
            for target in (self.poll_peers, self.publish_relayed, self.measure_rtts):
                threading.Thread(target=target, name=target.__name__, daemon=True).start()
            while not self.stop.is_set():
                try:
                    self.reconcile()
                except wg.WgError as e:
                    log.error("%s", e)
                self.view_changed.wait(RECONCILE_INTERVAL)
                self.view_changed.clear()
        finally:
            self.close()

    def close(self) -> None:
        self.stop.set()
        if self.shim:
            self.shim.close()
        if self.wg_proc and self.wg_proc.poll() is None:
            self.wg_proc.terminate()
            self.wg_proc.wait(timeout=5)
