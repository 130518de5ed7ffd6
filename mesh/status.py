"""`mesh status`: what each peer's path is, as the daemon last measured it.

The daemon writes $VCAPP_RUN_DIR/mesh/status.json about once a second; the CLI on the same
machine reads it. Shape:

    {"node": "home-1", "role": "machine" | "edge", "mesh_ip": "100.96.1.1", "interface": "...",
     "listen_port": 41641, "public_endpoint": "203.0.113.21:41641" | null,
     "edge": {"transport": "udp" | "tcp", "endpoint": ..., "last_handshake": <unix> | null,
              "rtt_ms": 0.4 | null, "rx_bytes": n, "tx_bytes": n},
     "peers": [{"node", "mesh_ip", "path": "lan" | "direct" | "relay-udp" | "relay-tcp",
                "endpoint", "last_handshake", "rtt_ms", "rx_bytes", "tx_bytes"}, ...],
     "updated": <unix>}

rx/tx of a peer count its own (direct) WireGuard session; relayed traffic is counted on
the edge entry. On the edge, peers list every registered machine with its endpoint.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

STATUS_FILE = "status.json"


def run_dir() -> Path:
    return Path(os.environ.get("VCAPP_RUN_DIR", "/run/vcapp")) / "mesh"


def write(data: dict, directory: Path | None = None) -> None:
    directory = directory or run_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / STATUS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def read(directory: Path | None = None) -> dict:
    path = (directory or run_dir()) / STATUS_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no mesh status at {path}: is `vcapp mesh up` (or `vcapp mesh edge`) "
                                "running on this machine?") from None


def _age(ts: float | None, now: float) -> str:
    return "never" if not ts else f"{now - ts:.0f}s ago"


def _rtt(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.2f}ms"


def render(data: dict, now: float | None = None) -> str:
    """A human table of the status."""
    now = now or time.time()
    edge = data.get("edge") or {}
    lines = [f"{data.get('node')} {data.get('mesh_ip')} on {data.get('interface')} "
             f"(port {data.get('listen_port')}, public {data.get('public_endpoint') or '?'}, "
             f"edge via {edge.get('transport', '-')}, updated {_age(data.get('updated'), now)})"]
    rows = [("PEER", "MESH IP", "PATH", "ENDPOINT", "HANDSHAKE", "RTT", "RX", "TX")]
    if edge:
        rows.append(("edge", edge.get("mesh_ip", ""), edge.get("transport", ""), edge.get("endpoint") or "-",
                     _age(edge.get("last_handshake"), now), _rtt(edge.get("rtt_ms")),
                     str(edge.get("rx_bytes", 0)), str(edge.get("tx_bytes", 0))))
    for p in data.get("peers", []):
        rows.append((p["node"], p["mesh_ip"], p.get("path") or "-", p.get("endpoint") or "-",
                     _age(p.get("last_handshake"), now), _rtt(p.get("rtt_ms")),
                     str(p.get("rx_bytes", 0)), str(p.get("tx_bytes", 0))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)
