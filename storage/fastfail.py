"""Fail fast towards a dead machine, so SeaweedFS's clients move on to the new master leader.

When the machine of the master leader powers off or is cut off, every SeaweedFS client
(filers, S3 gateways, mounts, the other masters) first redials the old leader. Packets to a
dead or cut-off machine vanish (its ARP entry is still cached on a LAN; over WireGuard there
is no answer either), so that dial waits for gRPC's 20 s connect timeout, not configurable
from the command line: the new leader is elected about 5 s after the death, but clients find it
only when that dial gives up. A firewall rule that answers connections to that machine's *storage*
ports with a TCP reset makes connect() fail at once and the clients try the next master.
Connections already open to it are aborted too (`ss -K`), on the storage ports and on any
other port the caller names: a connection that only waits for answers never hits the rule.
The caller names the machine's etcd client port: a filer keeps its metadata in the cluster's
etcd, and a filer whose etcd client had picked the cut-off member waited on it for good, so
every `weed mount` through that filer hung (found with a volume owner cut off on the master
leader's machine: tests/storage/test_partition_cluster.py). Aborting it makes the client use
the live members; new connections to etcd stay allowed, for when the machine returns.

The dead machine's connections *into* this machine's storage ports are aborted as well: its
volume server's heartbeat stream into our master, its filer's and S3 gateway's streams into our
master and filer. A master learns that a volume server or a filer is gone only when its stream
ends, and over a black hole that is gRPC keepalive's 60 + 20 s later: until then the master
leader kept placing new volumes and writes on the dead volume server, so S3 writes on the
survivors failed, and S3 lists failed too (tests/storage/test_s3_failover_cluster.py).

Only SeaweedFS's ports are rejected: etcd, the API and the mesh keep reaching the machine,
so a machine that was only cut off renews its lease once its cable is back, and
`mark_alive` (called when its lease is back) lifts the rule. The control plane calls
`mark_dead` on every live machine when a machine's lease expires.
"""

from __future__ import annotations

import ipaddress

from storage.host import Host, StorageError
from storage.plan import FILER_PORT, MASTER_PORT, S3_PORT, VOLUME_PORT

TIMEOUT = 10.0  # iptables answers in milliseconds (-w waits for the xtables lock)
GRPC_OFFSET = 10000  # SeaweedFS serves gRPC on its HTTP port + 10000
PORTS = (MASTER_PORT, VOLUME_PORT, FILER_PORT, S3_PORT)
COMMENT = "vcapp-storage-fastfail"


def _addr(addr: str) -> str:
    try:
        return str(ipaddress.ip_address(addr))
    except ValueError:
        raise StorageError(f"{addr!r} is not an IP address; give the dead machine's address") from None


def _ports() -> list[int]:
    return [p for base in PORTS for p in (base, base + GRPC_OFFSET)]


def _rule(addr: str) -> list[str]:
    return ["OUTPUT", "-d", f"{_addr(addr)}/32", "-p", "tcp", "-m", "multiport", "--dports",
            ",".join(str(p) for p in _ports()), "-m", "comment", "--comment", COMMENT, "-j", "REJECT",
            "--reject-with", "tcp-reset"]


def abort_filter(addr: str, also: tuple[int, ...] = ()) -> list[str]:
    """`ss` arguments selecting this machine's TCP connections with `addr`: ours to its storage
    ports (and to the ports `also`), and its to our storage ports (`dst` is the remote end,
    `sport` our local port)."""
    ends = [("dport", p) for p in (*_ports(), *also)] + [("sport", p) for p in _ports()]
    ports = [tok for end, p in ends for tok in ("or", end, "=", f":{p}")][1:]
    return ["-t", "dst", _addr(addr), "(", *ports, ")"]


def mark_dead(host: Host, addr: str, abort_also: tuple[int, ...] = ()) -> None:
    """On `host`: make connections to `addr`'s storage ports fail at once, and abort the
    open ones, with those to the ports `abort_also` and those from `addr` into our storage
    ports (idempotent)."""
    rule = _rule(addr)
    if host.run(["iptables", "-w", "-C", *rule], timeout=TIMEOUT).returncode != 0:
        out = host.run(["iptables", "-w", "-I", *rule], timeout=TIMEOUT)
        if out.returncode != 0:
            raise StorageError(f"on {host.name}: could not reject storage connections to {addr}: "
                               f"{out.stderr.strip()}")
    out = host.run(["ss", "-K", *abort_filter(addr, abort_also)], timeout=TIMEOUT)
    if out.returncode != 0:
        raise StorageError(f"on {host.name}: could not abort open storage connections to {addr}: "
                           f"{out.stderr.strip()}")


def mark_alive(host: Host, addr: str) -> None:
    """On `host`: remove what `mark_dead` added (no-op if there is none)."""
    rule = _rule(addr)
    for _ in range(10):  # a rule added twice by a race is deleted twice
        if host.run(["iptables", "-w", "-D", *rule], timeout=TIMEOUT).returncode != 0:
            return


def marked_dead(host: Host) -> set[str]:
    out = host.run(["iptables", "-w", "-S", "OUTPUT"], timeout=TIMEOUT)
    return {line.split("-d ", 1)[1].split("/", 1)[0] for line in out.stdout.splitlines() if COMMENT in line}
