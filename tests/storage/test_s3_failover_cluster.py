"""S3 on the surviving machines keeps answering when a machine dies, on a simulated cluster
of three machines with real etcd and SeaweedFS (tests/storage/conftest.py).

The victim is powered off behind a black hole, as a machine on the mesh is: its cable is
pulled first, so no FIN or RST of its dying processes reaches the others. The test then does
what the control plane does when the victim's lease expires (vcapp/node/storage_loop.py):
fastfail.mark_dead on every survivor, and the bucket rule lowered to the copies two machines
can hold. Meanwhile every survivor puts, lists and gets through its own S3 gateway every 0.5 s
(tests/storage/s3watch.py).

Guards storage/fastfail.py aborting the dead machine's connections *into* the survivors:
without it the master leader kept the dead volume server until gRPC keepalive ended its
heartbeat stream, and writes and lists failed for a minute.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from storage import buckets, fastfail, volumes
from storage.plan import MASTER_PORT
from tests.storage.conftest import ARTIFACTS
from vcapp.dev.rigs.storage import ETCD_CLIENT_PORT, StorageCluster, start_storage_cluster

pytestmark = pytest.mark.cluster

MACHINES = ["home-1", "home-2", "home-3"]
WATCH = Path(__file__).with_name("s3watch.py")
WARM_S = 8  # the watchers' operations from their first answer to the kill
# The bucket's first write waits for its volumes (tests/storage/s3watch.py FIRST_PUT_WITHIN_S):
# seconds, but once (a full run of the suite) more than WARM_S: a machine was slow to answer.
FIRST_ANSWER_WITHIN_S = 100
WATCH_S = 30  # after the kill: long enough to see that every operation works again
# The control plane marks a machine dead when its liveness lease (5 s) expires, seen by the
# storage loop that runs every 2 s; only then does it lower the rules to two copies.
LEASE_EXPIRY_S = 7
# Reads and lists pending at the kill or started after it have answered this long after the
# kill: the lease expiry plus a few seconds of SeaweedFS moving on, with room for a loaded
# 2-core CI machine.
ANSWERED_WITHIN_S = 15
# Writes started this long after the kill succeed: the rule is lowered to two copies after the
# lease expiry (a `weed shell` run, 1-7 s measured here) and the filers read it.
WRITES_WORK_AGAIN_S = 20
# A write the filer began under the three-copy rule and had to assign again once the dead
# volume server was gone retries that (impossible) assignment for 30 s before it fails; so
# writes pending around the lease expiry answer by then.
WRITES_ANSWERED_WITHIN_S = LEASE_EXPIRY_S + 30 + 8
QUICK_S = 3  # an answer in this long is no stall, even on a loaded machine
# A survivor's SeaweedFS process may crash on its own around the kill (a full run of the suite:
# home-1's filer panicked in CreateEntry 7 s after the kill, a nil pointer in SeaweedFS 4.48's
# chunk cleanup of a cancelled write). The rig starts it again as the daemon's storage loop does
# (within 2 s); the machine's S3 answers again this long after that restart: the filer starts,
# finds the master leader and opens its S3 port.
RESTARTED_ANSWERS_WITHIN_S = 12


# The watchers' first answers may come this far apart; each watches this much longer.
WATCHERS_APART_S = 10


def first_answer(log: Path) -> float | None:
    """When the watcher writing `log` started its first operation answered without error (epoch s)."""
    try:
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    except (OSError, ValueError):  # not written yet, or a line half written
        return None
    return min((r["at"] for r in rows if not r["err"]), default=None)


@pytest.fixture(scope="module")
def sc(storage_sim) -> StorageCluster:
    return start_storage_cluster(storage_sim, MACHINES)


def master_leader(sc: StorageCluster) -> str | None:
    for name in MACHINES:
        url = f"http://{sc.addr(name)}:{MASTER_PORT}/cluster/status"
        out = sc.host(name).run(["curl", "-sf", "--max-time", "3", url], timeout=10)
        try:
            if json.loads(out.stdout).get("IsLeader"):
                return name
        except ValueError:
            continue
    return None


def late_answers(rows: list[dict], killed: float, restarted: float | None = None) -> list[dict]:
    """Operations pending at the kill or started after it that broke the bounds above; with a
    survivor's own storage process restarted at `restarted` (epoch s), no earlier than
    RESTARTED_ANSWERS_WITHIN_S after that."""
    def after(bound: float) -> float:
        return max(killed + bound, restarted + RESTARTED_ANSWERS_WITHIN_S) if restarted else killed + bound

    def late(r: dict) -> bool:
        answered = r["at"] + r["took"]
        if answered < killed or (r["took"] <= QUICK_S and not r["err"]):
            return False
        if r["op"] != "put":
            return answered > after(ANSWERED_WITHIN_S)
        return r["at"] > after(WRITES_WORK_AGAIN_S) or answered > after(WRITES_ANSWERED_WITHIN_S)
    return [r for r in rows if late(r)]


def test_survivors_s3_answers_within_seconds_when_a_machine_behind_a_black_hole_dies(sc):
    sites = [sc.plan.machine(n).site for n in MACHINES]
    env = buckets.create_bucket(sc.plan, sc.host("home-1"), "jobs", sites, sc.weed)
    leader = master_leader(sc)
    # Not the master leader's machine: that case also waits for the volume servers to find the
    # new leader (see the commit that added this test).
    victim = next(n for n in reversed(MACHINES) if n != leader)
    survivors = [n for n in MACHINES if n != victim]
    python = str(Path(sc.weed).parent / "python")
    logs = {n: ARTIFACTS / f"storage-{sc.dc.name}" / f"s3watch-{n}.jsonl" for n in survivors}
    watchers = {}
    for n in survivors:
        logs[n].parent.mkdir(parents=True, exist_ok=True)
        watchers[n] = sc.dc.spawn(n, [python, str(WATCH), f"{sc.addr(n)}:8333", env["AWS_ACCESS_KEY_ID"],
                                      env["AWS_SECRET_ACCESS_KEY"], env["BUCKET_NAME"], n,
                                      str(WARM_S + WATCH_S + WATCHERS_APART_S)],
                                  log=logs[n])
    try:
        # the fault comes WARM_S after every watcher had its first answer (or gave up waiting for it)
        began = time.monotonic()
        while not all(first_answer(logs[n]) or watchers[n].poll() is not None for n in survivors):
            assert time.monotonic() - began < FIRST_ANSWER_WITHIN_S, "S3 never answered before the kill"
            time.sleep(0.2)
        firsts = [t for n in survivors if (t := first_answer(logs[n]))]
        assert not firsts or max(firsts) - min(firsts) < WATCHERS_APART_S, \
            f"the watchers' first answers came {max(firsts) - min(firsts):.0f}s apart: one would stop watching early"
        time.sleep(WARM_S)
        with sc.supervised(survivors) as restarts:
            killed = time.time()
            sc.dc.partition(victim, cut=True)
            sc.dc.kill(victim)
            time.sleep(LEASE_EXPIRY_S)
            for n in survivors:
                fastfail.mark_dead(sc.host(n), sc.addr(victim), abort_also=(ETCD_CLIENT_PORT,))
            live = [sc.plan.machine(n).site for n in survivors]
            assert volumes.converge_replication(sc.plan, sc.host(survivors[0]), live, sc.weed)["state"] == "degraded"
            for n in survivors:
                watchers[n].wait(WARM_S + WATCH_S + WATCHERS_APART_S + 90)  # its last operations end within 65 s
    finally:
        for w in watchers.values():
            if w.poll() is None:
                w.kill()
    for n in survivors:
        rows = [json.loads(line) for line in logs[n].read_text().splitlines() if line.startswith("{")]
        before = [r for r in rows if r["at"] + r["took"] < killed]
        assert before and not any(r["err"] for r in before), f"{n}: S3 not working before the kill: {before[-3:]}"
        stalls = [r for r in rows if r["at"] + r["took"] >= killed and (r["took"] > QUICK_S or r["err"])]
        last = max((r["at"] + r["took"] - killed for r in stalls), default=0.0)
        print(f"\n{n}: {len(stalls)} of {len(rows)} S3 operations stalled or failed after killing {victim} "
              f"(master leader {leader}); the last answered {last:.1f}s after the kill")
        restarted = max((at for at, m, _ in restarts if m == n), default=None)
        for at, m, names in restarts:
            if m == n:
                print(f"{n}: its {', '.join(names)} died and started again {at - killed:.1f}s after the kill")
        late = late_answers(rows, killed, restarted)
        assert not late, (f"{n}: {len(late)} S3 operations stalled or failed too long after {victim} died, "
                          f"e.g. {[dict(r, at=round(r['at'] - killed, 1)) for r in late[:5]]}")
        # rows are in the order operations ended: a write pending since the lease expiry ends last
        assert max(r["at"] for r in rows) > killed + WATCH_S - 5, f"{n}: the watcher stopped early"
