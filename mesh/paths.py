"""Which path each peer takes: lan, direct, relay-udp or relay-tcp, decided from measurements.

Pure logic, no I/O: the agent feeds in what WireGuard reports (the bytes received from each
peer's own session, which only grow when that peer's packets reach us directly) and gets
back which endpoint to try next. A peer whose direct session is quiet is routed through the
edge instead (its /32 moves to the edge's AllowedIPs) while probing goes on underneath.

Candidates for a peer, in order: its LAN endpoints when it shares our public address (same
site), then its public endpoint as the edge sees it. Both sides keep a keepalive on every
peer, so a working path is heard at least every HEARTBEAT.
"""

from __future__ import annotations

from dataclasses import dataclass

# Keepalive on every WireGuard peer (Tailscale's heartbeat): a working path is heard this often.
HEARTBEAT = 3
# A direct path with nothing heard for this long is down: two heartbeats lost plus slack
# (Tailscale's trustUDPAddrDuration).
DIRECT_TRUST = 6.5
# Flap dampening: a direct path lost again within FLAP_WINDOW of an earlier loss is held on
# the relay for FLAP_HOLD, doubled for each further loss (capped at DIRECT_RETRY), so a link
# that keeps dropping settles on the relay instead of switching every few seconds. The first
# loss has no hold: after a one-off outage the direct path is taken back as soon as it answers.
FLAP_WINDOW = 60.0
FLAP_HOLD = 10.0
# After every candidate failed, walk them again this often (Tailscale's upgrade probe). The
# best candidate keeps being probed by keepalives in between, so a path that comes back is
# found within a heartbeat or a handshake retry (5 s) anyway.
DIRECT_RETRY = 60.0
# The UDP path to the edge is down after this long without a word from the edge.
EDGE_TRUST = 6.5
# While a machine reaches the edge over TCP, check this often whether UDP gets out again.
EDGE_UDP_RETRY = 15.0

LAN, DIRECT, RELAY_UDP, RELAY_TCP = "lan", "direct", "relay-udp", "relay-tcp"


@dataclass(frozen=True)
class Candidate:
    kind: str  # LAN or DIRECT
    endpoint: str  # ip:port


def candidates(me: dict, peer: dict) -> list[Candidate]:
    """Endpoints to try for `peer`, best first (`me` and `peer` are coordination peer views)."""
    found: list[Candidate] = []
    same_site = bool(me.get("public_ip")) and me.get("public_ip") == peer.get("public_ip")
    if same_site:
        found += [Candidate(LAN, ep) for ep in peer.get("lan_endpoints", [])]
    if peer.get("endpoint") and peer.get("transport") == "udp":
        found.append(Candidate(DIRECT, peer["endpoint"]))
    return found


class DirectLink:
    """The direct path to one peer: the candidate being tried and whether it is heard."""

    def __init__(self, trust: float = DIRECT_TRUST, retry: float = DIRECT_RETRY):
        self.trust, self.retry = trust, retry
        self.cands: list[Candidate] = []
        self.idx = 0
        self.tried_at = 0.0
        self.parked_until = 0.0
        self.rx: int | None = None
        self.heard_at: float | None = None
        self.up = False  # routed directly (heard, and not held on the relay)
        self.losses: list[float] = []
        self.hold_until = 0.0

    def adopt(self, now: float) -> None:
        """Trust a session found already working (a restarted daemon takes over its interface):
        keep its path instead of detouring through the relay until the next keepalive."""
        self.heard_at, self.up = now, True

    def heard(self, now: float) -> bool:
        return self.heard_at is not None and now - self.heard_at < self.trust

    def alive(self, now: float) -> bool:
        """Should traffic to this peer go direct?"""
        return self.up and self.heard(now)

    def _track(self, now: float) -> None:
        heard = self.heard(now)
        if self.up and not heard:
            self.up = False
            self.losses = [t for t in self.losses if now - t < FLAP_WINDOW] + [now]
            repeats = len(self.losses) - 1
            self.hold_until = now + (min(self.retry, FLAP_HOLD * 2 ** (repeats - 1)) if repeats else 0.0)
        elif not self.up and heard and now >= self.hold_until:
            self.up = True

    def update(self, now: float, cands: list[Candidate], rx_bytes: int, current: str | None) -> str | None:
        """Take a measurement; return an endpoint to (re)try now, or None to leave things be."""
        if self.rx is not None and rx_bytes > self.rx:
            self.heard_at = now
        self.rx = rx_bytes
        self._track(now)
        if cands != self.cands:
            self.cands = cands
            eps = [c.endpoint for c in cands]
            if self.heard(now) and current in eps:
                self.idx = eps.index(current)
                return None
            return self._try(now, 0) if cands else None
        if not cands or self.heard(now):
            return None
        if self.parked_until:
            if now < self.parked_until:
                return None
            self.parked_until = 0.0
            return self._try(now, 0)
        if now - self.tried_at < self.trust:
            return None
        if self.idx + 1 < len(self.cands):
            return self._try(now, self.idx + 1)
        self.parked_until = now + self.retry
        return self._try(now, 0)  # wait on the best candidate; keepalives keep probing it

    def _try(self, now: float, idx: int) -> str:
        self.idx, self.tried_at = idx, now
        return self.cands[idx].endpoint

    def path(self, now: float, current: str | None, relay_kind: str) -> str:
        """lan or direct while heard (by the endpoint WireGuard actually uses), else the relay."""
        if not self.alive(now):
            return relay_kind
        for c in self.cands:
            if c.endpoint == current:
                return c.kind
        return DIRECT


class EdgeLink:
    """How this machine reaches the edge: UDP while the edge is heard, else the TCP relay."""

    def __init__(self, now: float, trust: float = EDGE_TRUST, retry: float = EDGE_UDP_RETRY):
        self.trust, self.retry = trust, retry
        self.transport = "udp"
        self.since = now
        self.rx: int | None = None
        self.heard_at: float | None = None
        self.probed_at = now

    def heard(self, now: float) -> bool:
        return self.heard_at is not None and now - self.heard_at < self.trust

    def update(self, now: float, rx_bytes: int) -> str | None:
        """Take a measurement; return the new transport when it should change."""
        if self.rx is not None and rx_bytes > self.rx:
            self.heard_at = now
        self.rx = rx_bytes
        if self.transport == "udp" and not self.heard(now) and now - self.since >= self.trust:
            return self._switch(now, "tcp")
        return None

    def wants_probe(self, now: float) -> bool:
        return self.transport == "tcp" and now - self.probed_at >= self.retry

    def probed(self, now: float, udp_ok: bool) -> str | None:
        self.probed_at = now
        return self._switch(now, "udp") if udp_ok else None

    def _switch(self, now: float, transport: str) -> str:
        self.transport, self.since, self.heard_at, self.probed_at = transport, now, None, now
        return transport


def routed_direct(own_alive: bool, my_ip: str, peer: dict) -> bool:
    """Does traffic to `peer` go on its own WireGuard peer? Only while this end hears it and the
    peer does not relay us. Both ends must agree: a machine drops a packet that arrives from the
    edge when its source mesh IP sits on that source's own WireGuard peer (AllowedIPs bind each
    address to one peer), so a pair on different paths carries nothing either way. One end
    alone may stop hearing the other (a one-way black hole, a NAT mapping gone on one side) or
    hold it on the relay (flap dampening); each publishes whom it relays (coord /relayed) and
    the other follows within a peer-list update."""
    return own_alive and my_ip not in peer.get("relayed", ())


def relay_kind(my_transport: str, peer_transport: str | None) -> str:
    """A relayed pair rides TCP if either end reaches the edge over TCP."""
    return RELAY_TCP if "tcp" in (my_transport, peer_transport) else RELAY_UDP
