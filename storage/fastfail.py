"""Fail fast towards a dead machine, so SeaweedFS's clients move on to the new master leader.

When the machine of the master leader powers off, every SeaweedFS client (filers, S3
gateways, mounts, the other masters) first redials the old leader. Packets to a dead
machine vanish (its ARP entry is still cached on a LAN; over WireGuard there is no answer
either), so that dial waits for gRPC's 20 s connect timeout, not configurable from the
command line; measured here: the new leader is elected 5 s after the death, clients
find it 21 s after. An `unreachable` route for the dead machine's address makes connect()
fail at once (EHOSTUNREACH) and the clients try the next master.

The control plane calls `mark_dead` on every live machine when a machine's lease expires,
and `mark_alive` when it is back (before it is expected to serve again). Only a /32 route
for that one address is added; nothing else of the routing table is touched.
"""

from __future__ import annotations

import ipaddress

from storage.host import Host, StorageError

ROUTE_TIMEOUT = 10.0  # `ip route` answers in milliseconds


def _addr(addr: str) -> str:
    try:
        return str(ipaddress.ip_address(addr))
    except ValueError:
        raise StorageError(f"{addr!r} is not an IP address; give the dead machine's address") from None


def mark_dead(host: Host, addr: str) -> None:
    """On `host`: make connections to `addr` fail at once."""
    out = host.run(["ip", "route", "replace", "unreachable", f"{_addr(addr)}/32"], timeout=ROUTE_TIMEOUT)
    if out.returncode != 0:
        raise StorageError(f"on {host.name}: could not add an unreachable route for {addr}: {out.stderr.strip()}")


def mark_alive(host: Host, addr: str) -> None:
    """On `host`: remove the route `mark_dead` added (no-op if there is none)."""
    host.run(["ip", "route", "del", "unreachable", f"{_addr(addr)}/32"], timeout=ROUTE_TIMEOUT)


def marked_dead(host: Host) -> set[str]:
    out = host.run(["ip", "-o", "route", "show", "type", "unreachable"], timeout=ROUTE_TIMEOUT)
    return {line.split()[1].removesuffix("/32") for line in out.stdout.splitlines() if line.strip()}
