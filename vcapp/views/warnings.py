"""Cluster warnings: what a person should look at, computed from state alone (pure).

    disk:<node>        a machine up with less than DISK_FREE_MIN of its disk free
    memory:<node>      a machine up with less than MEMORY_FREE_MIN of its memory available
    flapping:<node>    FLAP_TRANSITIONS or more up/down transitions within FLAP_WINDOW_S
    crashloop:<app>    restarts climbed by CRASH_RESTARTS or more within CRASH_WINDOW_S
    relay:<a>:<b>      machine a has reached peer b only through the edge's relay for RELAY_STUCK_S
    storage            app data has fewer copies than it should (a machine is down); it heals
                       by itself when one returns or joins (vcapp/node/storage_loop.py)
    certificate:<host> the edge has no valid certificate for a served name (its issuance failed,
                       or it expired), or one that expires within CERT_EXPIRY_WARN_S unrenewed

`diff` tells which warnings started and cleared, for the events the controller records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

DISK_FREE_MIN = 0.10    # under 10 % free a build or a volume can fill the rest within hours
MEMORY_FREE_MIN = 0.10  # under 10 % available the kernel's OOM killer is near
FLAP_WINDOW_S = 600     # several transitions in 10 min is a bad cable or power, not maintenance
FLAP_TRANSITIONS = 4    # down-up-down-up: one reboot is two transitions, so 4 is two restarts
CRASH_WINDOW_S = 300    # the runtime backs off restarts; 3 in 5 min is a loop, not a hiccup
CRASH_RESTARTS = 3
RELAY_STUCK_S = 120     # hole punching retries within a minute; two minutes on relay is stuck
RELAY_PATHS = ("relay-udp", "relay-tcp")
# Let's Encrypt's 90-day certificates are renewed 30 days ahead: a week left means three
# weeks of failed renewals, and a week to fix the DNS or the edge's ports.
CERT_EXPIRY_WARN_S = 7 * 86400


@dataclass(frozen=True)
class Inputs:
    """What the warnings are computed from; every field is plain data read from etcd."""

    nodes: list[dict]                        # membership.list_nodes records
    transitions: list[tuple[float, str]]     # (time, node) of node.up/node.down events
    restarts: dict[str, list[tuple[float, float]]]  # app -> (time, restarts counter), oldest first
    mesh: dict[str, dict]                    # node -> {peer: {"path", "since"}}
    now: float
    storage: dict | None = None              # /vc/storage/state, None while no volume exists
    certificates: dict | None = None         # host -> the edge's report (vcapp/state/certificates.py)


def compute(inp: Inputs) -> dict[str, dict]:
    """Every current warning by id: {kind, severity, node?, app?, message}."""
    found: dict[str, dict] = {}
    for node in inp.nodes:
        found.update(resource_warnings(node))
    found.update(flapping(inp.transitions, inp.now))
    for app, samples in inp.restarts.items():
        found.update(crash_looping(app, samples, inp.now))
    found.update(stuck_on_relay(inp.mesh, {n["name"] for n in inp.nodes if n.get("up")}, inp.now))
    found.update(storage_degraded(inp.storage))
    found.update(certificate_problems(inp.certificates or {}, inp.now))
    return found


def certificate_problems(certs: dict[str, dict], now: float) -> dict[str, dict]:
    """A served name without a valid certificate, or with one about to expire unrenewed. The
    messages name no countdown: a warning's text stays as it started."""
    found = {}
    for host, cert in sorted(certs.items()):
        state, reason, not_after = cert.get("state"), cert.get("reason") or "", cert.get("not_after")
        if state == "failed":
            message = (f"the edge could not get a certificate for {host}: {reason}; check that its DNS points "
                       "at the edge and the edge's ports 80/443 are open (`vcapp domains`)")
        elif state == "expired":
            message = f"the certificate of {host} has expired and no renewal succeeded (`vcapp domains`)"
        elif state == "issued" and not_after and not_after - now < CERT_EXPIRY_WARN_S and "failed" in reason:
            day = time.strftime("%Y-%m-%d", time.gmtime(not_after))
            message = f"the certificate of {host} expires on {day} and its renewal fails: {reason}"
        else:
            continue
        found[f"certificate:{host}"] = {"kind": "certificate", "severity": "warning", "message": message}
    return found


def storage_degraded(state: dict | None) -> dict[str, dict]:
    if not state or state.get("state") != "degraded":
        return {}
    return {"storage": {"kind": "storage", "severity": "warning",
                        "message": f"app data is degraded: only {state.get('live', '?')} machine(s) up, new "
                                   "writes keep 2 copies; bring a machine back (or join one) and a third copy "
                                   "is made by itself"}}


def _low(free: float | None, total: float | None, minimum: float) -> float | None:
    if not total or free is None:
        return None
    share = free / total
    return share if share < minimum else None


def resource_warnings(node: dict) -> dict[str, dict]:
    if not node.get("up"):
        return {}
    name, out = node["name"], {}
    disk = _low(node.get("free_disk_mb"), node.get("disk_mb"), DISK_FREE_MIN)
    if disk is not None:
        out[f"disk:{name}"] = {"kind": "disk", "severity": "warning", "node": name,
                               "message": f"{name}: disk nearly full, {disk:.0%} free "
                                          f"({node['free_disk_mb']} of {node['disk_mb']} MB); "
                                          "free space or move volumes off it"}
    mem = _low(node.get("free_memory_mb"), node.get("memory_mb"), MEMORY_FREE_MIN)
    if mem is not None:
        out[f"memory:{name}"] = {"kind": "memory", "severity": "warning", "node": name,
                                 "message": f"{name}: memory nearly full, {mem:.0%} available; "
                                            "scale apps down or add a machine"}
    return out


def flapping(transitions: list[tuple[float, str]], now: float) -> dict[str, dict]:
    counts: dict[str, int] = {}
    for t, node in transitions:
        if now - t <= FLAP_WINDOW_S:
            counts[node] = counts.get(node, 0) + 1
    return {f"flapping:{n}": {"kind": "flapping", "severity": "warning", "node": n,
                              "message": f"{n} is flapping: {c} up/down transitions in the last "
                                         f"{FLAP_WINDOW_S // 60} min; check its power and network"}
            for n, c in counts.items() if c >= FLAP_TRANSITIONS}


def crash_looping(app: str, samples: list[tuple[float, float]], now: float) -> dict[str, dict]:
    recent = [r for t, r in samples if now - t <= CRASH_WINDOW_S and r is not None]
    if len(recent) < 2:
        return {}
    climbed = max(recent) - min(recent)
    if climbed < CRASH_RESTARTS:
        return {}
    return {f"crashloop:{app}": {"kind": "crashloop", "severity": "error", "app": app,
                                 "message": f"app {app} is crash-looping: {climbed:.0f} restarts in the last "
                                            f"{CRASH_WINDOW_S // 60} min; `vcapp logs {app}` shows why"}}


def stuck_on_relay(mesh: dict[str, dict], up: set[str], now: float) -> dict[str, dict]:
    out = {}
    for node, peers in mesh.items():
        for peer, info in (peers or {}).items():
            if node not in up or peer not in up or info.get("path") not in RELAY_PATHS:
                continue
            if now - (info.get("since") or now) >= RELAY_STUCK_S:
                out[f"relay:{node}:{peer}"] = {
                    "kind": "relay", "severity": "info", "node": node, "peer": peer,
                    "message": f"{node} reaches {peer} only through the edge relay ({info['path']}) for "
                               f"{(now - info['since']) / 60:.0f} min; slower, and down if the edge is"}
    return out


def diff(old: dict[str, dict], new: dict[str, dict], now: float) -> tuple[dict[str, dict], list[dict], list[dict]]:
    """(current warnings with `since` kept from `old`, started ones, cleared ones)."""
    current = {wid: dict(w, id=wid, since=(old.get(wid) or {}).get("since", now)) for wid, w in new.items()}
    started = [current[w] for w in sorted(current) if w not in old]
    cleared = [dict(old[w], id=w) for w in sorted(old) if w not in new]
    return current, started, cleared
