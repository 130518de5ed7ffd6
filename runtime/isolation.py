"""Isolation between apps on one machine, with published ports as the one way across.

Each app's podman network is created with netavark's `isolate=true`: netavark then drops
forwarded traffic between isolated bridges (chains NETAVARK_ISOLATION_1/2). That also drops
a container of app B calling app A's *published* port on this machine's address, because
the DNAT'd packet is forwarded from B's bridge to A's. The rule kept here, first in FORWARD,
lets DNAT'd connections (exactly the published ports) through before the isolation chains:

    -A FORWARD -m conntrack --ctstate DNAT -m comment --comment vcapp-published -j ACCEPT

netavark inserts its own jump at the top when it (re)creates its chains, so the agent
checks the order every step and moves the rule back to the top (a gap of one loop at most).
"""

from __future__ import annotations

from runtime.shell import Shell

RULE = ["-m", "conntrack", "--ctstate", "DNAT", "-m", "comment", "--comment", "vcapp-published", "-j", "ACCEPT"]


def ensure_published_ports_cross_apps(shell: Shell) -> bool:
    """Make RULE the first rule of FORWARD. Returns True if it had to change anything."""
    listing = shell.run(["iptables", "-w", "-S", "FORWARD"])
    if listing.returncode != 0:
        raise OSError(f"cannot read iptables FORWARD: {listing.stderr.strip()}; the agent must run as root")
    rules = [l for l in listing.stdout.splitlines() if l.startswith("-A FORWARD")]
    if rules and "vcapp-published" in rules[0]:
        return False
    while shell.run(["iptables", "-w", "-D", "FORWARD", *RULE]).returncode == 0:
        pass  # drop copies that slid down
    proc = shell.run(["iptables", "-w", "-I", "FORWARD", "1", *RULE])
    if proc.returncode != 0:
        raise OSError(f"cannot add the published-port rule: {proc.stderr.strip()}")
    return True
