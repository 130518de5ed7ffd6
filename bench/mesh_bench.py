"""Mesh benchmark: overlay vs underlay RTT and TCP throughput between two machines, per path
kind (lan, direct, relay-udp, relay-tcp), measured in the same run; plus the share of pairs
that go peer to peer under each office NAT.

    .venv/bin/python bench/mesh_bench.py [--seconds 3] [--rounds 300]

Brings up its own simulated cluster (mbnXXXX) with the edge and three machines in the mesh,
exactly as tests/mesh does. Underlay baselines: home-1 -> home-2 over the LAN; home-1 ->
office-1 through both NATs via a port forward opened on the office router for the bench
(what a person would do without the mesh). The office NAT is then switched to hard (the
pair relays over UDP through the edge) and to UDP-blocked (relays over TCP). Prints tables.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PORT = 5301
MSG = 64
CHUNK = 64 * 1024
TIMEOUT = 30.0


# ---- the two ends (run on simulated machines) ----------------------------------------------

def serve(port: int) -> None:
    """Echo ('E' + 64-byte messages) or sink ('S' + bytes until EOF, answered with the count)."""
    import threading
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("0.0.0.0", port))
    lsock.listen(16)
    print("ready", flush=True)

    def handle(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn, conn.makefile("rb") as f:
            mode = f.read(1)
            if mode == b"E":
                while (msg := f.read(MSG)) and len(msg) == MSG:
                    conn.sendall(msg)
            elif mode == b"S":
                total = 0
                while chunk := f.read1(CHUNK):
                    total += len(chunk)
                conn.sendall(str(total).encode())

    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def client(host: str, port: int, rounds: int, seconds: float) -> dict:
    rtts = []
    with socket.create_connection((host, port), timeout=TIMEOUT) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"E")
        msg = b"x" * MSG
        for _ in range(rounds):
            t = time.perf_counter()
            s.sendall(msg)
            got = b""
            while len(got) < MSG:
                got += s.recv(MSG - len(got))
            rtts.append((time.perf_counter() - t) * 1000)
    with socket.create_connection((host, port), timeout=TIMEOUT) as s:
        s.sendall(b"S")
        data = b"y" * CHUNK
        sent, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            s.sendall(data)
            sent += len(data)
        s.shutdown(socket.SHUT_WR)
        acked = int(s.recv(64))
        elapsed = time.perf_counter() - start
    return {"rtt_p50": statistics.median(rtts), "rtt_p99": sorted(rtts)[int(0.99 * (len(rtts) - 1))],
            "mbps": acked * 8 / elapsed / 1e6}


# ---- the driver (runs on the host) ---------------------------------------------------------

def measure(mesh, src: str, dst: str, rounds: int, seconds: float) -> dict:
    proc = mesh.sim.run(src, sys.executable, __file__, "--client", dst, str(PORT), str(rounds), str(seconds),
                        timeout=seconds * 4 + 60)
    return json.loads(proc.stdout)


def open_port_forward(mesh) -> None:
    """Let home-1 reach office-1:PORT through the office NAT (the underlay baseline)."""
    from vcapp.dev import netns
    ns, target = mesh.sim.topology.ns("office"), mesh.sim.addr("office-1")
    netns.iptables(ns, "-I", "FORWARD", "1", "-i", "wan", "-o", "br-lan", "-p", "tcp", "-d", target,
                   "--dport", str(PORT), "-j", "ACCEPT")
    if netns.iptables(ns, "-t", "nat", "-C", "PREROUTING", "-i", "wan", "-p", "tcp", "--dport", str(PORT),
                      "-j", "DNAT", "--to-destination", f"{target}:{PORT}", check=False).returncode != 0:
        netns.iptables(ns, "-t", "nat", "-A", "PREROUTING", "-i", "wan", "-p", "tcp", "--dport", str(PORT),
                       "-j", "DNAT", "--to-destination", f"{target}:{PORT}")


def pair_paths(mesh) -> list[str]:
    pairs = [("home-1", "home-2"), ("home-1", "office-1"), ("home-2", "office-1")]
    return [mesh.path(a, b) for a, b in pairs]


def run(rounds: int, seconds: float) -> tuple[list[dict], dict]:
    from mesh import auth
    from vcapp.dev.cluster import DevCluster
    from vcapp.dev.rigs.mesh import MACHINES, Mesh, realistic_router_input
    from vcapp.dev.rigs.sim import Sim
    from vcapp.dev.topology import default

    dc = DevCluster("mbn" + secrets.token_hex(2))
    dc.up(default(dc.name))
    rows, shares, mesh = [], {}, None
    try:
        sim = Sim(dc)
        realistic_router_input(sim)
        mesh = Mesh(sim, auth.new_mesh_key(), Path(tempfile.mkdtemp(prefix="mesh-bench-")))
        mesh.start_edge()
        for host in MACHINES:
            mesh.start_machine(host)
        mesh.settle(timeout=60)
        servers = [dc.spawn(h, [sys.executable, __file__, "--serve", str(PORT)], stdout=subprocess.PIPE)
                   for h in ("home-2", "office-1")]
        for s in servers:
            assert s.stdout.readline().strip() == b"ready"
        open_port_forward(mesh)
        office_public = sim.addr("office")

        def row(kind, src, dst, overlay_ip, underlay_ip):
            over = measure(mesh, src, overlay_ip, rounds, seconds)
            under = measure(mesh, src, underlay_ip, rounds, seconds)
            rows.append({"path": kind, "pair": f"{src}->{dst}", "overlay": over, "underlay": under})

        shares["easy"] = pair_paths(mesh)
        row("lan", "home-1", "home-2", mesh.ip("home-2"), sim.addr("home-2"))
        row("direct", "home-1", "office-1", mesh.ip("office-1"), office_public)
        for mode, kind in (("hard", "relay-udp"), ("udp-blocked", "relay-tcp")):
            dc.set_nat("office", mode)
            open_port_forward(mesh)  # a NAT change rewrites the router's FORWARD chain
            for a, b in (("home-1", "office-1"), ("office-1", "home-1"), ("home-2", "office-1"), ("office-1", "home-2")):
                mesh.wait_path(a, b, kind, 30)
            mesh.wait_ping("home-1", "office-1", 10)
            shares[mode] = pair_paths(mesh)
            row(kind, "home-1", "office-1", mesh.ip("office-1"), office_public)
        for s in servers:
            s.kill()
        return rows, shares
    finally:
        if mesh:
            mesh.forget_sockets()
        dc.down()


def table(rows: list[dict], shares: dict, rounds: int, seconds: float) -> str:
    out = [f"TCP between two machines, same run: {rounds} round trips of {MSG} B (RTT), one stream for "
           f"{seconds:.0f} s (throughput). Underlay = same machines without the mesh (LAN, or a port forward "
           "through both NATs).",
           f"{'path':<10}{'pair':<19}{'RTT p50 ms':>11}{'base':>7}{'ratio':>7}{'RTT p99':>9}{'base':>7}"
           f"{'Mbit/s':>9}{'base':>8}{'ratio':>7}"]
    for r in rows:
        o, u = r["overlay"], r["underlay"]
        out.append(f"{r['path']:<10}{r['pair']:<19}{o['rtt_p50']:>11.3f}{u['rtt_p50']:>7.3f}"
                   f"{o['rtt_p50'] / u['rtt_p50']:>7.1f}{o['rtt_p99']:>9.3f}{u['rtt_p99']:>7.3f}"
                   f"{o['mbps']:>9.0f}{u['mbps']:>8.0f}{o['mbps'] / u['mbps']:>7.2f}")
    out.append("\nPairs (home-1/home-2, home-1/office-1, home-2/office-1) by office NAT:")
    for mode, paths in shares.items():
        p2p = sum(p in ("lan", "direct") for p in paths)
        out.append(f"  {mode:<12} {', '.join(paths):<40} peer-to-peer {p2p}/{len(paths)}, relayed {len(paths) - p2p}/{len(paths)}")
    return "\n".join(out)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
        return
    if len(sys.argv) == 6 and sys.argv[1] == "--client":
        print(json.dumps(client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=300)
    a = ap.parse_args()
    rows, shares = run(a.rounds, a.seconds)
    print(table(rows, shares, a.rounds, a.seconds))


if __name__ == "__main__":
    main()
