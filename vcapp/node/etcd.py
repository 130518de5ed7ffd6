"""This machine's etcd member: its command line and data directory."""

from __future__ import annotations

from pathlib import Path

from vcapp.node.config import ETCD_CLIENT_PORT, NodeConfig

ETCD_BIN = "/usr/bin/etcd"
# Raft timers: etcd's defaults (100 ms heartbeat, 1 s election) assume a LAN. Links between
# homes over the mesh have tens of ms of RTT and more jitter, so allow 2.5x.
HEARTBEAT_MS = 250
ELECTION_MS = 2500


def data_dir(base: Path) -> Path:
    return base / "etcd"


def has_data(base: Path) -> bool:
    return (data_dir(base) / "member").is_dir()


def command(cfg: NodeConfig, base: Path) -> list[str]:
    return [
        ETCD_BIN,
        "--name", cfg.name,
        "--data-dir", str(data_dir(base)),
        "--listen-client-urls", f"{cfg.etcd_client_url},http://127.0.0.1:{ETCD_CLIENT_PORT}",
        "--advertise-client-urls", cfg.etcd_client_url,
        "--listen-peer-urls", cfg.etcd_peer_url,
        "--initial-advertise-peer-urls", cfg.etcd_peer_url,
        "--initial-cluster", cfg.etcd.initial_cluster,
        "--initial-cluster-state", cfg.etcd.state,
        "--initial-cluster-token", f"vcapp-{cfg.cluster}",
        "--heartbeat-interval", str(HEARTBEAT_MS),
        "--election-timeout", str(ELECTION_MS),
        "--auto-compaction-mode", "periodic",
        "--auto-compaction-retention", "1h",
        "--logger", "zap",
        "--log-level", "warn",
    ]
