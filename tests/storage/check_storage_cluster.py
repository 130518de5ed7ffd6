"""Storage on a simulated cluster of three machines on one LAN, with real etcd and SeaweedFS.

Machines home-1 and home-2 are labelled site dc-a and home-3 site dc-b, so replica placement
spreads over two "data centers" (code 110: one copy in the other site, one on another
machine of the primary's site). The tests run in file order: later ones rely on the
volumes and machines that earlier ones left.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from builder.baseimage import TINY_IMAGE, tiny_build_command, tiny_context
from storage import buckets, fastfail, guard, mount, replication, storaged, volumes
from storage.host import StorageError
from tests.storage.conftest import EtcdWriterStore
from vcapp.dev.rigs.storage import StorageCluster, start_storage_cluster
from vcapp.dev.rigs.waiting import wait_for

pytestmark = pytest.mark.cluster

SITES = {"home-1": "dc-a", "home-2": "dc-a", "home-3": "dc-b"}
RECORDS = 1000
FSYNC_EVERY = 100  # records per fsync / per SQLite transaction
HEAL_TIMEOUT = 60.0  # the master sees a revived volume server within a heartbeat or two
S3PROBE = Path(__file__).with_name("s3probe.py")


@pytest.fixture(scope="module")
def sc(storage_sim) -> StorageCluster:
    return start_storage_cluster(storage_sim, list(SITES), SITES)


def live_sites(sc: StorageCluster, alive: list[str]) -> list[str]:
    return [sc.plan.machine(n).site for n in alive]


def mount_path(sc: StorageCluster, host: str, app: str, name: str) -> Path:
    return sc.host(host).run_dir / "volumes" / app / name


def write_records(root: Path) -> dict[str, str]:
    """1000 records in a plain file and in SQLite, fsync'd every FSYNC_EVERY; their checksums."""
    with open(root / "records.txt", "w") as f:
        for i in range(RECORDS):
            f.write(f"record {i} {hashlib.sha256(str(i).encode()).hexdigest()}\n")
            if (i + 1) % FSYNC_EVERY == 0:
                f.flush()
                os.fsync(f.fileno())
    db = sqlite3.connect(root / "app.db")
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS r (id INTEGER PRIMARY KEY, body TEXT)")
    for start in range(0, RECORDS, FSYNC_EVERY):
        with db:
            db.executemany("INSERT INTO r VALUES (?, ?)", [(i, f"row {i}") for i in range(start, start + FSYNC_EVERY)])
    db.close()
    return checksums(root)


def checksums(root: Path) -> dict[str, str]:
    db = sqlite3.connect(root / "app.db")
    rows = db.execute("SELECT id, body FROM r ORDER BY id").fetchall()
    db.close()
    return {
        "records.txt": hashlib.sha256((root / "records.txt").read_bytes()).hexdigest(),
        "rows": hashlib.sha256(json.dumps(rows).encode()).hexdigest(),
        "count": str(len(rows)),
    }


def s3(sc: StorageCluster, host: str, env: dict, op: str, key: str, data: str = "", endpoint: str | None = None) -> dict:
    out = sc.host(host).run([str(Path(sc.weed).parent / "python"), str(S3PROBE), endpoint or env["AWS_ENDPOINT_URL_S3"],
                             env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env["BUCKET_NAME"], op, key, data],
                            timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def copies_of(sc: StorageCluster, host: str, vol: volumes.Volume) -> dict[int, int]:
    return volumes.replica_report(sc.plan, sc.host(host), vol, sc.weed)


def test_agent_converges_and_restarts_a_dead_process(sc):
    h = sc.host("home-2")
    assert storaged.converge(sc.plan, h, h.data_dir, h.run_dir, sc.weed) == []  # already as planned
    volume = storaged.running(h.run_dir, "volume")
    os.kill(volume["pid"], 9)
    wait_for(lambda: storaged.running(h.run_dir, "volume") is None, 10, "volume server dead", 1)
    assert sc.converge("home-2") == ["volume"]
    assert (h.data_dir / "storage" / "filer" / "filer.toml").read_text().count("[etcd]") == 1


def test_mount_check_refuses_a_plain_directory(sc, tmp_path):
    with pytest.raises(StorageError, match="not a mounted volume"):
        mount.verify_mounted(tmp_path)
    with pytest.raises(StorageError, match="does not exist"):
        mount.mount_volume(sc.plan, sc.host("home-1"), "ghost", "data", tmp_path / "m", sc.host("home-1").run_dir,
                           sc.weed)


def test_fsynced_data_survives_the_death_of_its_machine_and_heals(sc):
    alive = list(SITES)
    vol = volumes.create_volume(sc.plan, sc.host("home-1"), "blog", "data", 100, live_sites(sc, alive), sc.weed)
    env = buckets.create_bucket(sc.plan, sc.host("home-1"), "blog", live_sites(sc, alive), sc.weed)
    p1 = mount.mount_volume(sc.plan, sc.host("home-1"), "blog", "data", mount_path(sc, "home-1", "blog", "data"),
                            sc.host("home-1").run_dir, sc.weed)
    before = write_records(p1)
    assert before["count"] == str(RECORDS)
    assert s3(sc, "home-1", env, "put", "before-death", "kept")["ok"]
    # three copies of every volume of this app's data, each on its own machine
    placed = wait_for(lambda: (c := copies_of(sc, "home-2", vol)) and all(n == 3 for n in c.values()) and c,
                      30, "3 copies of every volume", 1)
    assert set(placed) and replication.copies("110") == 3

    t0 = time.monotonic()
    sc.dc.kill("home-1")
    alive = ["home-2", "home-3"]
    for n in alive:  # the control plane, as soon as home-1's lease expires
        fastfail.mark_dead(sc.host(n), sc.addr("home-1"))
    # what the runtime does on the instance's new machine: mount, and the app reads
    p2 = mount.mount_volume(sc.plan, sc.host("home-2"), "blog", "data", mount_path(sc, "home-2", "blog", "data"),
                            sc.host("home-2").run_dir, sc.weed)
    assert checksums(p2) == before
    t_read = time.monotonic() - t0
    got = s3(sc, "home-3", env, "get", "before-death", endpoint=f"http://{sc.addr('home-3')}:8333")
    assert got == {"ok": True, "data": "kept"}
    # what the control plane does when home-1's lease expires: lower the copies for new data
    degraded = volumes.converge_replication(sc.plan, sc.host("home-2"), live_sites(sc, alive), sc.weed)
    assert degraded["state"] == "degraded" and degraded["code"] == "100"
    print(f"after kill: mounted on home-2 and all records read in {t_read:.1f}s, "
          f"degraded rule in place {time.monotonic() - t0:.1f}s")

    # degraded: writes go on, on two copies
    with open(p2 / "while-degraded.bin", "wb") as f:
        f.write(os.urandom(2 << 20))
        f.flush()
        os.fsync(f.fileno())
    two = wait_for(lambda: (c := copies_of(sc, "home-2", vol)) and 2 in c.values() and c, 30, "a 2-copy volume", 1)
    assert min(two.values()) == 2
    print(f"copies before death {placed}, while degraded {two}")

    sc.dc.revive("home-1")
    for n in ("home-2", "home-3"):
        fastfail.mark_alive(sc.host(n), sc.addr("home-1"))
        assert sc.addr("home-1") not in fastfail.marked_dead(sc.host(n))
    sc.converge("home-1")
    alive = list(SITES)

    def healed():
        report = volumes.converge_replication(sc.plan, sc.host("home-2"), live_sites(sc, alive), sc.weed)
        counts = copies_of(sc, "home-2", vol)
        return report["state"] == "healthy" and counts and all(n == 3 for n in counts.values()) and counts

    t1 = time.monotonic()
    counts = wait_for(healed, HEAL_TIMEOUT, "every volume back to 3 copies", 1)
    print(f"healed in {time.monotonic() - t1:.1f}s after revive: {counts}")
    assert set(two) <= set(counts)
    assert (p2 / "while-degraded.bin").stat().st_size == 2 << 20


def test_size_limit_is_enforced_with_enospc(sc):
    alive = list(SITES)
    volumes.create_volume(sc.plan, sc.host("home-3"), "tiny", "data", 5, live_sites(sc, alive), sc.weed)
    p = mount.mount_volume(sc.plan, sc.host("home-3"), "tiny", "data", mount_path(sc, "home-3", "tiny", "data"),
                           sc.host("home-3").run_dir, sc.weed)
    with open(p / "fits.bin", "wb") as f:
        f.write(os.urandom(3 << 20))
        f.flush()
        os.fsync(f.fileno())
    with pytest.raises(OSError) as err:
        with open(p / "too-big.bin", "wb") as f:
            f.write(os.urandom(4 << 20))
            f.flush()
            os.fsync(f.fileno())
    assert err.value.errno == errno.ENOSPC
    assert (p / "fits.bin").stat().st_size == 3 << 20


def test_bucket_keys_open_only_their_own_bucket(sc):
    alive = list(SITES)
    a = buckets.create_bucket(sc.plan, sc.host("home-2"), "alpha", live_sites(sc, alive), sc.weed)
    b = buckets.create_bucket(sc.plan, sc.host("home-2"), "beta", live_sites(sc, alive), sc.weed)
    assert set(a) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3", "BUCKET_NAME"}
    assert s3(sc, "home-3", a, "put", "secret.txt", "alpha data")["ok"]
    assert s3(sc, "home-3", a, "get", "secret.txt") == {"ok": True, "data": "alpha data"}
    intruder = dict(b, BUCKET_NAME="alpha")
    assert s3(sc, "home-3", intruder, "get", "secret.txt") == {"ok": False, "code": "AccessDenied"}
    assert s3(sc, "home-3", intruder, "put", "planted.txt", "x") == {"ok": False, "code": "AccessDenied"}
    assert s3(sc, "home-3", intruder, "list", "-") == {"ok": False, "code": "AccessDenied"}
    assert s3(sc, "home-3", a, "anon-get", "secret.txt") == {"ok": False, "code": "AccessDenied"}
    # created again: same keys (idempotent), so a re-deploy does not break the app
    assert buckets.create_bucket(sc.plan, sc.host("home-2"), "alpha", live_sites(sc, alive), sc.weed) == a


def test_a_container_reads_and_writes_the_mounted_volume(sc, tmp_path):
    host = "home-2"
    built = sc.dc.run(host, tiny_build_command(tiny_context(tmp_path / "tiny")), timeout=300)
    assert built.returncode == 0, built.stderr
    p = mount.mount_volume(sc.plan, sc.host(host), "blog", "data", mount_path(sc, host, "blog", "data"),
                           sc.host(host).run_dir, sc.weed)
    out = sc.dc.run(host, ["podman", "run", "--rm", "--network", "none", "--volume", f"{p}:/data", TINY_IMAGE,
                           "sh", "-c", "wc -l < /data/records.txt && echo from-container > /data/c.txt && sync"],
                    timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == str(RECORDS)
    assert (p / "c.txt").read_text() == "from-container\n"


def test_one_machine_at_a_time_mounts_a_volume_for_writing(sc):
    """The writer key in (real) etcd, tied to each machine's lease: home-3 is refused while
    home-2 holds it, and takes over when home-2's lease ends."""
    one = EtcdWriterStore(sc.host("home-2"), sc.etcd)
    two = EtcdWriterStore(sc.host("home-3"), sc.etcd)
    p2 = guard.mount_for_writing(one, sc.plan, sc.host("home-2"), "blog", "data", "blog-0",
                                 mount_path(sc, "home-2", "blog", "data"), sc.host("home-2").run_dir, sc.weed)
    assert mount.verify_mounted(p2)["fstype"] == "fuse.seaweedfs"
    p3 = mount_path(sc, "home-3", "blog", "data")
    with pytest.raises(guard.WriterConflict, match="held for writing by home-2"):
        guard.mount_for_writing(two, sc.plan, sc.host("home-3"), "blog", "data", "blog-1", p3,
                                sc.host("home-3").run_dir, sc.weed)
    assert mount.mount_entry(p3) is None  # refused before mounting anything
    one.expire()
    p3 = guard.mount_for_writing(two, sc.plan, sc.host("home-3"), "blog", "data", "blog-1", p3,
                                 sc.host("home-3").run_dir, sc.weed)
    assert (p3 / "records.txt").exists()
    assert json.loads(two.get(guard.writer_key("blog", "data")))["node"] == "home-3"
