"""Benchmark: a replicated volume (weed mount, 3 copies) against the machine's local disk.

Brings up a simulated cluster of three machines on one LAN (etcd + SeaweedFS as the storage
agent runs them), mounts a volume on home-1, and measures, side by side in the same run:

    seq write+fsync   one file in 1 MiB blocks, fsync at the end          MiB/s
    seq read          the same file, cold (local: page cache dropped for
                      the file; volume: read through home-2's mount)      MiB/s
    small files       create + write 4 KiB + fsync + close                files/s
    appends           open O_APPEND + one line + fsync + close, as a
                      journal does; median ms of the first and the last
                      100 of --appends (each fsync'ed append is a chunk
                      of its own in the filer's entry for the file)     ms
    S3 put / get      4 KiB objects through the S3 gateway (minio client)  ops/s

    .venv/bin/python bench/storage_bench.py [--mb 64] [--files 200] [--objects 200]

Needs root (network namespaces). Prints a table with volume/local ratios.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage import buckets, mount, volumes  # noqa: E402
from vcapp.dev.cluster import DevCluster  # noqa: E402
from vcapp.dev.rigs.storage import start_storage_cluster  # noqa: E402
from vcapp.dev.topology import default  # noqa: E402

BLOCK = 1 << 20
SMALL = 4096
S3_SCRIPT = """
import io, sys, time
from minio import Minio
endpoint, access, secret, bucket, n = sys.argv[1:6]
c = Minio(endpoint.split("//")[1], access_key=access, secret_key=secret, secure=False)
body = b"x" * 4096
t = time.monotonic()
for i in range(int(n)):
    c.put_object(bucket, f"o{i}", io.BytesIO(body), len(body))
put = time.monotonic() - t
t = time.monotonic()
for i in range(int(n)):
    r = c.get_object(bucket, f"o{i}"); r.read(); r.close(); r.release_conn()
get = time.monotonic() - t
print(put, get)
"""


def seq_write(path: Path, mb: int) -> float:
    block = os.urandom(BLOCK)
    t = time.monotonic()
    with open(path, "wb") as f:
        for _ in range(mb):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    return mb / (time.monotonic() - t)


def seq_read(path: Path, drop_cache: bool) -> float:
    if drop_cache:
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    size = path.stat().st_size
    t = time.monotonic()
    with open(path, "rb", buffering=0) as f:
        while f.read(BLOCK):
            pass
    return size / BLOCK / (time.monotonic() - t)


def small_files(root: Path, count: int) -> float:
    root.mkdir(parents=True, exist_ok=True)
    body = os.urandom(SMALL)
    t = time.monotonic()
    for i in range(count):
        with open(root / f"f{i}", "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
    return count / (time.monotonic() - t)


def appends(path: Path, count: int, edge: int = 100) -> tuple[float, float]:
    """Median ms of the first and of the last `edge` of `count` fsync'ed one-line appends."""
    took = []
    for i in range(count):
        t = time.monotonic()
        with open(path, "a") as f:
            f.write(f"id={i}\n")
            f.flush()
            os.fsync(f.fileno())
        took.append((time.monotonic() - t) * 1000)
    return statistics.median(took[:edge]), statistics.median(took[-edge:])


def s3_rates(sc, env: dict, objects: int) -> tuple[float, float]:
    out = sc.host("home-1").run([sys.executable, "-c", S3_SCRIPT, env["AWS_ENDPOINT_URL_S3"], env["AWS_ACCESS_KEY_ID"],
                                 env["AWS_SECRET_ACCESS_KEY"], env["BUCKET_NAME"], str(objects)], timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"S3 benchmark failed: {out.stderr}")
    put, get = (float(x) for x in out.stdout.split())
    return objects / put, objects / get


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--objects", type=int, default=200)
    ap.add_argument("--appends", type=int, default=3000)
    args = ap.parse_args()
    dc = DevCluster("sb" + secrets.token_hex(2))
    try:
        dc.up(default(dc.name, 3, 0))
        names = ["home-1", "home-2", "home-3"]
        sc = start_storage_cluster(dc, names)
        sites = [sc.plan.machine(n).site for n in names]
        h1, h2 = sc.host("home-1"), sc.host("home-2")
        volumes.create_volume(sc.plan, h1, "bench", "data", 10_000, sites, sc.weed)
        vol1 = mount.mount_volume(sc.plan, h1, "bench", "data", h1.run_dir / "volumes/bench/data", h1.run_dir, sc.weed)
        local = h1.data_dir / "bench-local"
        local.mkdir(parents=True, exist_ok=True)
        write = ("seq write+fsync MiB/s", seq_write(local / "big", args.mb), seq_write(vol1 / "big", args.mb))
        # mounted after the write, as on failover: home-2 has nothing of the file cached
        vol2 = mount.mount_volume(sc.plan, h2, "bench", "data", h2.run_dir / "volumes/bench/data", h2.run_dir, sc.weed)
        rows = [
            write,
            ("seq read (cold) MiB/s", seq_read(local / "big", True), seq_read(vol2 / "big", False)),
            ("small files/s (4K+fsync)", small_files(local / "small", args.files),
             small_files(vol1 / "small", args.files)),
        ]
        local_first, local_last = appends(local / "journal", args.appends)
        vol_first, vol_last = appends(vol1 / "journal", args.appends)
        rows += [(f"append ms, first 100 of {args.appends}", local_first, vol_first),
                 (f"append ms, last 100 of {args.appends}", local_last, vol_last)]
        env = buckets.create_bucket(sc.plan, h1, "bench", sites, sc.weed)
        put, get = s3_rates(sc, env, args.objects)
        print(f"\nstorage bench: 3 simulated machines, one LAN, volume with 3 copies "
              f"({args.mb} MiB file, {args.files} small files, {args.appends} appends, {args.objects} S3 objects)\n")
        print(f"{'measure':28} {'local disk':>12} {'volume':>12} {'volume/local':>13}")
        for name, base, vol in rows:
            print(f"{name:28} {base:12.1f} {vol:12.1f} {vol / base:13.2f}")
        print(f"{'S3 put 4K ops/s':28} {'-':>12} {put:12.1f}")
        print(f"{'S3 get 4K ops/s':28} {'-':>12} {get:12.1f}")
    finally:
        dc.down()


if __name__ == "__main__":
    main()
