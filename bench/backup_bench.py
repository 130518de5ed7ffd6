"""Benchmark: `vcapp backup create` and `vcapp backup restore` against tar + age on local disk.

Brings up three simulated machines on one LAN, an app with a volume holding --mb MiB of random
data (written by the app itself at its first start), and measures in the same run:

    backup     `vcapp backup create` through home-2's API: state, the app's image, the volume
               read through a weed mount, encrypted with age, streamed to the admin's disk
    restore    `vcapp backup restore` on a fresh machine (the first cluster torn down): a new
               cluster founded, the image pushed, the volume made and unpacked through a
               weed mount (3 copies once the machines join; one while alone)
    baseline   the same bytes with `tar -c | age -r` and `age -d | tar -x` on this machine's
               local disk: what reading, encrypting and writing them costs without vcapp

    .venv/bin/python bench/backup_bench.py [--mb 256]

Needs root (network namespaces). Prints seconds, MiB/s and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builder.baseimage import TINY_IMAGE  # noqa: E402
from vcapp.dev.cluster import DevCluster  # noqa: E402
from vcapp.dev.rigs.control import ControlCluster, start_machines  # noqa: E402
from vcapp.dev.rigs.sim import Sim  # noqa: E402
from vcapp.dev.rigs.waiting import wait_for  # noqa: E402
from vcapp.dev.topology import default  # noqa: E402

APP = "blobs"
SERVE = ("[ -f /data/blob ] || (dd if=/dev/urandom of=/data/blob.part bs=1M count={mb} 2>/dev/null && sync "
         "&& mv /data/blob.part /data/blob); mkdir -p /www; ls -l /data/blob > /www/index.html; "
         "exec httpd -f -p 8080 -h /www")


def cluster(tmp: Path, tag: str, founded: bool = True) -> ControlCluster:
    """Three machines running vcapp's daemon: a founded cluster, or blank ones (for a restore)."""
    dc = DevCluster(tag + secrets.token_hex(2))
    dc.dir.mkdir(parents=True)
    dc.up(default(dc.name, 3, 0))
    if founded:
        return start_machines(Sim(dc), tmp / f"tiny-{dc.name}")
    cc = ControlCluster(Sim(dc), ["home-1", "home-2", "home-3"])
    cc.boot_daemons()
    return cc


def healthy(cc: ControlCluster) -> bool:
    proc = cc.vcapp("home-1", "ps", APP, "--json", check=False)
    rows = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else []
    return any(r["state"] == "running" and r.get("health") == "healthy" for r in rows)


def timed(argv: list[str], **kw) -> float:
    began = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True, **kw)
    return time.monotonic() - began


def baseline(tmp: Path, mb: int, recipient: str, identity: Path) -> tuple[float, float]:
    src, out = tmp / "base-src", tmp / "base-out"
    src.mkdir()
    out.mkdir()
    with open(src / "blob", "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
        os.fsync(f.fileno())
    sealed = tmp / "base.tar.age"
    write = timed(["sh", "-c", f"tar -C {src} -cf - . | age -r {recipient} -o {sealed} && sync"])
    read = timed(["sh", "-c", f"age -d -i {identity} {sealed} | tar -C {out} -xf - && sync"])
    return write, read


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=256, help="MiB of data on the app's volume")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vcapp-backup-bench-"))
    identity = tmp / "key.txt"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = next(line.split(":", 1)[1].strip() for line in identity.read_text().splitlines() if "public key" in line)
    made: list[ControlCluster] = []
    try:
        old = cluster(tmp, "bb")
        made.append(old)
        old.vcapp("home-1", "apps", "create", APP, "--image", TINY_IMAGE, "--port", "8080", "--command",
                  SERVE.format(mb=args.mb), "--health-path", "/", "--memory", "128M", "--volume", "data:/data")
        old.vcapp("home-1", "volumes", "create", APP, "data", "--size", f"{max(64, args.mb * 2)}M")
        wait_for(lambda: healthy(old), 600, f"{APP} serving with {args.mb} MiB on its volume", interval=2)
        began = time.monotonic()
        out = old.vcapp("home-2", "backup", "create", "-r", recipient, "-o", str(tmp))
        backup_s = time.monotonic() - began
        backup = next(tmp.glob("vcapp-backup-*.tar.age"))
        print(out.stdout.strip())
        old.sim.dc.down()
        made.remove(old)

        new = cluster(tmp, "br", founded=False)
        made.append(new)
        began = time.monotonic()
        done = new.vcapp("home-1", "backup", "restore", str(backup), "--identity", str(identity), "--site", "home")
        restore_s = time.monotonic() - began
        token = re.search(r"vcjoin_\S+", done.stdout).group(0)
        for host in ("home-2", "home-3"):
            new.join(host, token=token)
        wait_for(lambda: healthy(new), 600, f"{APP} serving on the restored cluster", interval=2)
        serving_s = time.monotonic() - began

        base_write, base_read = baseline(tmp, args.mb, recipient, identity)
        size_mb = backup.stat().st_size / (1 << 20)
        print(f"\nbackup of {args.mb} MiB on a volume ({size_mb:.0f} MiB file), this machine, one run:")
        print(f"{'':28}{'vcapp':>10}{'tar+age':>10}{'ratio':>8}{'vcapp MiB/s':>13}")
        print(f"{'backup create':28}{backup_s:>9.1f}s{base_write:>9.1f}s{backup_s / base_write:>8.1f}"
              f"{size_mb / backup_s:>13.1f}")
        print(f"{'backup restore':28}{restore_s:>9.1f}s{base_read:>9.1f}s{restore_s / base_read:>8.1f}"
              f"{size_mb / restore_s:>13.1f}")
        print(f"{'restore until the app serves':28}{serving_s:>9.1f}s   (two machines joining after the restore)")
    finally:
        for cc in made:
            cc.sim.dc.down()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
