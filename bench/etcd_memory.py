"""etcd's memory under the filers' write pattern: a file's entry, rewritten whole on each
fsync, grows by a chunk reference per append (what `weed mount` does to an app appending to
its volume). Two members side by side on loopback, same writes: etcd 3.4's default snapshot
count (100 000) against the one vcapp runs (vcapp/node/etcd.py SNAPSHOT_COUNT), and the RSS
of each after every batch. A ratio against the baseline in the same run, not a timing.

    .venv/bin/python bench/etcd_memory.py [--writes 30000] [--entry-kb 30]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vcapp.node.etcd import COMPACTION_RETENTION, ETCD_BIN, SNAPSHOT_COUNT  # noqa: E402 - after the path set-up
from vcapp.state.store import Store, wait_healthy  # noqa: E402

BASELINE_SNAPSHOT_COUNT = 100_000  # etcd 3.4's default


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(data: Path, snapshot_count: int) -> tuple[subprocess.Popen, str]:
    client, peer = free_port(), free_port()
    url = f"http://127.0.0.1:{client}"
    proc = subprocess.Popen(
        [ETCD_BIN, "--name", "m", "--data-dir", str(data), "--listen-client-urls", url,
         "--advertise-client-urls", url, "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}", "--initial-cluster",
         f"m=http://127.0.0.1:{peer}", "--snapshot-count", str(snapshot_count),
         "--auto-compaction-mode", "periodic", "--auto-compaction-retention", COMPACTION_RETENTION,
         "--quota-backend-bytes", str(8 << 30)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_healthy(Store([url]), 20)
    return proc, url


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writes", type=int, default=30000, help="entry rewrites (raft entries) per member")
    ap.add_argument("--entry-kb", type=int, default=30, help="size of the rewritten entry")
    args = ap.parse_args()
    value = "c" * (args.entry_kb * 1024)
    with tempfile.TemporaryDirectory() as tmp:
        members = {n: start(Path(tmp) / str(n), n) for n in (BASELINE_SNAPSHOT_COUNT, SNAPSHOT_COUNT)}
        try:
            stores = {n: Store([url], timeout=30) for n, (_, url) in members.items()}
            print(f"{args.writes} rewrites of a {args.entry_kb} KB entry; RSS in MB "
                  f"(snapshot count {BASELINE_SNAPSHOT_COUNT} vs {SNAPSHOT_COUNT})")
            print(f"{'writes':>8} {'baseline':>9} {'vcapp':>7} {'ratio':>6}")
            step, began = max(1, args.writes // 10), time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                for done in range(step, args.writes + 1, step):
                    for n, store in stores.items():
                        list(pool.map(lambda i, s=store: s.put("/vc/volumes/file", {"i": i, "chunks": value}),
                                      range(step)))
                    base, ours = (rss_mb(members[n][0].pid) for n in (BASELINE_SNAPSHOT_COUNT, SNAPSHOT_COUNT))
                    print(f"{done:8} {base:9.0f} {ours:7.0f} {ours / base:6.2f}", flush=True)
            print(f"({time.monotonic() - began:.0f}s)")
        finally:
            for proc, _ in members.values():
                proc.kill()
                proc.wait(10)


if __name__ == "__main__":
    main()
