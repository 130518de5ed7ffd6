"""wireguard-go's CPU on an idle mesh's trickle of packets, and its bulk throughput, by the
number of Go scheduler threads it runs on (GOMAXPROCS), measured in one run.

    .venv/bin/python bench/wg_procs.py [--rounds 3] [--seconds 30] [--rate 60] [--procs 1,2]

Two network namespaces of its own joined by a veth pair, a wireguard-go in each with one
peer (the other), configured through its UAPI socket as mesh/wg.py does. Per round and per
setting, in turn: `ping` at --rate packets a second through the tunnel for --seconds (an idle
three-machine mesh carries ~60 packets a second each way: Raft heartbeats, lease renewals,
peer probes; bench/footprint.py) and the CPU both wireguard-go processes used meanwhile; then
one TCP stream pushed through the tunnel for 8 s. Both ends run on this host's cores, so the
throughput is a floor for two machines, not their link's ceiling. Medians over the rounds,
with each setting's ratio to the first one (the baseline).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mesh import keys, wg  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
TUNNEL = ("10.231.0.1", "10.231.0.2")
UNDERLAY = ("10.230.0.1", "10.230.0.2")
PORTS = (51931, 51932)
BULK_S = 8.0
SINK_PORT = 5931


def sh(*argv: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = (["nsenter", f"--net=/run/netns/{ns}"] if ns else []) + list(argv)
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


class Pair:
    """Two namespaces, a veth between them, a wireguard-go each with GOMAXPROCS `procs`."""

    def __init__(self, procs: str):
        tag = secrets.token_hex(2)
        self.ns = (f"wgpa{tag}", f"wgpb{tag}")
        self.ifs = (f"wgpa{tag}", f"wgpb{tag}")
        self.procs: list[subprocess.Popen] = []
        for ns in self.ns:
            sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vb{tag}")
        for i, (ns, veth) in enumerate(zip(self.ns, (f"va{tag}", f"vb{tag}"))):
            sh("ip", "link", "set", veth, "netns", ns)
            sh("ip", "addr", "add", f"{UNDERLAY[i]}/24", "dev", veth, ns=ns)
            sh("ip", "link", "set", veth, "up", ns=ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        private = [keys.generate_private() for _ in self.ns]
        for ns, ifname in zip(self.ns, self.ifs):
            env = dict(os.environ, WG_PROCESS_FOREGROUND="1", LOG_LEVEL="error", GOMAXPROCS=procs)
            self.procs.append(subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", "wireguard-go", "-f", ifname],
                                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for ifname in self.ifs:
            deadline = time.monotonic() + wg.START_TIMEOUT
            while not wg.alive(ifname):
                if time.monotonic() > deadline:
                    raise SystemExit(f"wireguard-go {ifname} did not start")
                time.sleep(0.05)
        for i, (ns, ifname) in enumerate(zip(self.ns, self.ifs)):
            other = 1 - i
            wg.set_device(ifname, private[i], PORTS[i], [wg.PeerConfig(
                keys.public_of(private[other]).hex(), endpoint=f"{UNDERLAY[other]}:{PORTS[other]}",
                allowed_ips=[f"{TUNNEL[other]}/32"])])
            sh("ip", "addr", "add", f"{TUNNEL[i]}/24", "dev", ifname, ns=ns)
            sh("ip", "link", "set", ifname, "up", ns=ns)
        sh("ping", "-c", "3", "-i", "0.2", "-W", "2", TUNNEL[1], ns=self.ns[0])

    def pids(self) -> list[int]:
        """The wireguard-go processes (nsenter execs into them: same pid)."""
        return [p.pid for p in self.procs]

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        for ns in self.ns:
            sh("ip", "netns", "del", ns, check=False)


def trickle_cpu(pair: Pair, rate: float, seconds: float) -> float:
    """% of one core both wireguard-go processes used while `rate` pings a second crossed."""
    before = sum(cpu_ticks(p) for p in pair.pids())
    sh("ping", "-q", "-i", f"{1 / rate:.4f}", "-w", str(int(seconds)), TUNNEL[1], ns=pair.ns[0], check=False)
    used = sum(cpu_ticks(p) for p in pair.pids()) - before
    return 100.0 * used / TICK / seconds


SINK = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); n = 0
while (d := c.recv(1 << 16)):
    n += len(d)
print(n, flush=True)
"""

SOURCE = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2]))); b = b"x" * (1 << 16)
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    s.sendall(b)
s.close()
"""


def bulk_mbit(pair: Pair) -> float:
    sink = subprocess.Popen(["nsenter", f"--net=/run/netns/{pair.ns[1]}", sys.executable, "-c", SINK, TUNNEL[1],
                             str(SINK_PORT)], stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    sh(sys.executable, "-c", SOURCE, TUNNEL[1], str(SINK_PORT), str(BULK_S), ns=pair.ns[0])
    received = int(sink.stdout.readline().strip() or 0)
    sink.wait()
    return received * 8 / BULK_S / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each trickle")
    ap.add_argument("--rate", type=float, default=60.0, help="pings a second (each: a packet each way)")
    ap.add_argument("--procs", default="2,1", help="GOMAXPROCS settings, the first is the baseline")
    args = ap.parse_args()
    settings = args.procs.split(",")
    cpu: dict[str, list[float]] = {s: [] for s in settings}
    mbit: dict[str, list[float]] = {s: [] for s in settings}
    for r in range(args.rounds):
        for s in settings:
            pair = Pair(s)
            try:
                cpu[s].append(trickle_cpu(pair, args.rate, args.seconds))
                mbit[s].append(bulk_mbit(pair))
            finally:
                pair.close()
            print(f"round {r + 1} GOMAXPROCS={s}: {cpu[s][-1]:.2f} % of a core, {mbit[s][-1]:.0f} Mbit/s", flush=True)
    base = settings[0]
    print(f"\nwireguard-go, both ends, {args.rate:g} pings/s for {args.seconds:g} s; medians of {args.rounds} rounds "
          f"({os.cpu_count()} cores)")
    print(f"{'GOMAXPROCS':>10}  {'CPU % core':>10}  {'vs ' + base:>7}  {'TCP Mbit/s':>10}  {'vs ' + base:>7}")
    for s in settings:
        c, m = statistics.median(cpu[s]), statistics.median(mbit[s])
        cb, mb = statistics.median(cpu[base]), statistics.median(mbit[base])
        print(f"{s:>10}  {c:>10.2f}  {c / cb:>6.2f}x  {m:>10.0f}  {m / mb:>6.2f}x")


if __name__ == "__main__":
    main()
