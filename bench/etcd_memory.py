"""etcd's memory under the filers' write pattern: a file's entry, rewritten whole on each
fsync, grows by a chunk reference per append (what `weed mount` does to an app appending to
its volume). Two members side by side on loopback, same writes: etcd 3.4's default snapshot
count (100 000) against the one vcapp runs (vcapp/node/etcd.py SNAPSHOT_COUNT), and the RSS
of each after every batch. A ratio against the baseline in the same run, not a timing.

    .venv/bin/python bench/etcd_memory.py [--writes 30000] [--entry-kb 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vcapp.dev.rigs.etcd import lone_etcd  # noqa: E402 - after the path set-up
from vcapp.node.etcd import COMPACTION_RETENTION, SNAPSHOT_COUNT  # noqa: E402
from vcapp.state.store import Store  # noqa: E402

BASELINE_SNAPSHOT_COUNT = 100_000  # etcd 3.4's default


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
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        members = {}  # snapshot count -> (url, process)
        for n in (BASELINE_SNAPSHOT_COUNT, SNAPSHOT_COUNT):
            (Path(tmp) / str(n)).mkdir()
            members[n] = stack.enter_context(lone_etcd(
                Path(tmp) / str(n), "--snapshot-count", str(n), "--auto-compaction-mode", "periodic",
                "--auto-compaction-retention", COMPACTION_RETENTION, "--quota-backend-bytes", str(8 << 30)))
        stores = {n: Store([url], timeout=30) for n, (url, _) in members.items()}
        print(f"{args.writes} rewrites of a {args.entry_kb} KB entry; RSS in MB "
              f"(snapshot count {BASELINE_SNAPSHOT_COUNT} vs {SNAPSHOT_COUNT})")
        print(f"{'writes':>8} {'baseline':>9} {'vcapp':>7} {'ratio':>6}")
        step, began = max(1, args.writes // 10), time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            for done in range(step, args.writes + 1, step):
                for store in stores.values():
                    list(pool.map(lambda i, s=store: s.put("/vc/volumes/file", {"i": i, "chunks": value}),
                                  range(step)))
                base, ours = (rss_mb(members[n][1].pid) for n in (BASELINE_SNAPSHOT_COUNT, SNAPSHOT_COUNT))
                print(f"{done:8} {base:9.0f} {ours:7.0f} {ours / base:6.2f}", flush=True)
        print(f"({time.monotonic() - began:.0f}s)")


if __name__ == "__main__":
    main()
