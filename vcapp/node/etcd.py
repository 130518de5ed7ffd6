"""This machine's etcd member: its command line and data directory.

etcd speaks TLS only, to clients and to peers, and admits only certificates signed by the
cluster CA that are not on the revocation list (vcapp/etcdtls.py). Its loopback listener is
TLS too: a process on the machine without the machine's key gets nothing from it either.
Auth is on from `cluster init` (vcapp/state/etcdauth.py): a certificate without a login reads nothing."""

from __future__ import annotations

import os
from pathlib import Path

from vcapp import etcdtls
from vcapp.machine import ETCD_CLIENT_PORT, NodeConfig
from vcapp.state import etcdauth

ETCD_BIN = "/usr/bin/etcd"
# Raft timers. etcd's defaults (100 ms heartbeat, 1 s election) assume a LAN; links between
# homes over the mesh have tens of ms of RTT and more jitter. The heartbeat is the longest etcd
# accepts under this election timeout (a fifth of it): the leader's heartbeats and their answers
# are about half of what an idle follower does (three members with no client: 0.75x the CPU of a
# 150 ms heartbeat, bench/etcd_procs.py), and a longer one costs a dead leader nothing
# (followers wait out the election timeout whatever the heartbeat).
# The election timeout is what a dead leader costs twice: followers wait 1-2x it before
# electing, and the new leader extends every lease by it on promotion, so a machine that was
# the leader is declared down about TTL + 2-3x this after it dies (2500 ms made that 11-12 s
# in bench/failover_bench.py). It must also stay well under the runtime's fencing delay
# (runtime_loop.FENCE_AFTER_S, 3 s): healthy machines cannot renew during an election.
HEARTBEAT_MS = 240
ELECTION_MS = 1200
# The Go scheduler threads etcd runs on (GOMAXPROCS). Idle, a member's work is Raft's ticks and
# a few requests a second, each handed between goroutines: on more threads each hand-off woke an
# idle one on another core. One thread idles at 0.75x the CPU and answers a write and a read at
# 50 a second as fast (bench/etcd_procs.py); an idle cluster's leader answers ~13 a second.
GOMAXPROCS = os.environ.get("VCAPP_ETCD_GOMAXPROCS", "1")
# Revisions older than this are compacted away (nothing here reads history: no watches). The
# filers keep file metadata in etcd and rewrite a file's whole entry, every chunk listed, on
# each fsync: an app appending a line and fsyncing twice a second grew every member's database
# by ~400 MB in 25 minutes with an hour kept (the soak, bench/soak.py), on course for etcd's
# 2 GB quota, past which etcd refuses every write of the whole cluster. Compaction frees pages
# inside the file; vcapp/node/defrag_loop.py gives them back after a burst.
COMPACTION_RETENTION = "5m"
# Raft entries applied since the last snapshot stay in the member's memory (plus 5000 kept for
# followers to catch up). etcd 3.4 snapshots every 100 000: with the filers' entries of tens of
# KB each, a member's RSS grew by ~1.5 GB in the hour-long soak and ~210 MB in 13 minutes of an
# aimed one at 8 entries/s (its database was 43 MB), on course to grow for hours. 10 000 is
# etcd 3.6's default.
SNAPSHOT_COUNT = 10000


def data_dir(base: Path) -> Path:
    return base / "etcd"


def has_data(base: Path) -> bool:
    return (data_dir(base) / "member").is_dir()


def environment() -> dict[str, str]:
    return dict(os.environ, GOMAXPROCS=GOMAXPROCS)


def command(cfg: NodeConfig, base: Path) -> list[str]:
    return [
        ETCD_BIN,
        "--name", cfg.name,
        "--data-dir", str(data_dir(base)),
        "--listen-client-urls", f"{cfg.etcd_client_url},https://127.0.0.1:{ETCD_CLIENT_PORT}",
        "--advertise-client-urls", cfg.etcd_client_url,
        "--listen-peer-urls", cfg.etcd_peer_url,
        "--initial-advertise-peer-urls", cfg.etcd_peer_url,
        "--initial-cluster", cfg.etcd.initial_cluster,
        "--initial-cluster-state", cfg.etcd.state,
        "--initial-cluster-token", f"vcapp-{cfg.cluster}",
        "--heartbeat-interval", str(HEARTBEAT_MS),
        "--election-timeout", str(ELECTION_MS),
        # A member cut off from the others (black-holed, partitioned, a flapping link) asks
        # whether it could win before it raises its term. Without it, such a member came back
        # with a term raised by every election it tried alone and unseated the working leader:
        # reads and lease renewals stalled for 11 s on every machine and a healthy machine
        # fenced its volume app (bench/soak.py). etcd 3.6 turns it on by default.
        "--pre-vote",
        "--auto-compaction-mode", "periodic",
        "--auto-compaction-retention", COMPACTION_RETENTION,
        "--snapshot-count", str(SNAPSHOT_COUNT),
        "--logger", "zap",
        "--log-level", "warn",
        *tls_flags(etcdtls.paths(base)),
        *auth_flags(),
    ]


def tls_flags(tls: etcdtls.Paths) -> list[str]:
    """etcd's TLS for clients and peers: a certificate from the cluster CA, not revoked, or
    no connection. The revocation list file must exist (etcd refuses every handshake when it
    cannot read it)."""
    return [
        "--client-cert-auth", "--trusted-ca-file", str(tls.ca),
        "--cert-file", str(tls.cert), "--key-file", str(tls.key), "--client-crl-file", str(tls.crl),
        "--peer-client-cert-auth", "--peer-trusted-ca-file", str(tls.ca),
        "--peer-cert-file", str(tls.cert), "--peer-key-file", str(tls.key), "--peer-crl-file", str(tls.crl),
    ]


def auth_flags() -> list[str]:
    """etcd's logins (vcapp/state/etcdauth.py): simple tokens, kept in the member's memory."""
    return ["--auth-token", "simple", "--auth-token-ttl", str(etcdauth.TOKEN_TTL_S),
            "--bcrypt-cost", str(etcdauth.BCRYPT_COST)]
