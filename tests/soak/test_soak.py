"""The chaos soak's short version (issue 20): bench/soak.py on a fresh 3-machine, 2-site cluster
with four apps under an open-loop client through the edge, four faults in four and a half
minutes (seed SEED: a flapping link, a machine's CPU burnt, a machine killed and booted, a
machine black-holed), each aimed at the machine the ledger app runs on at the time. No
acknowledged write may be lost or applied twice, and no machine may be marked down, nor any app
failed over, without a fault that made a machine unreachable.

Aimed, the flap cuts the link of the machine whose mount holds the ledger's appends: in the
soak's first data loss, an upload refused while that link was down dropped an append whose
close reported it, and the ledger, then a shell append (`echo >> f; sync f`), acknowledged it
anyway (docs/volumes.md, "Durable writes"). Not every flap catches an upload in flight; the
hour-long and aimed runs of bench/soak.py give the odds their time.

Availability is the long run's figure (bench/soak.py --minutes 60); here it only has to show
that the apps were serving and the faults really hit them."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import claim
from vcapp.dev.cluster import DevCluster, list_clusters

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SOAK = str(Path(__file__).resolve().parents[2] / "bench" / "soak.py")
SEED, MINUTES, EVERY = 9, 4.5, 50
# Set-up ~1 min on an idle host, the run 4.5 min, the final read and footprint ~1 min; a
# loaded CI host has taken three times the set-up.
TIMEOUT = 15 * 60
# The ledger writes 2 per second: a good part of the 4.5 min must have been acknowledged (its
# machine's faults and the storage's own recovery cost it minutes: issue 20's open findings).
MIN_ACKED = 150
# Guards, not targets: the two-instance app rides through every fault here; the single-instance
# ones are out while their machine is lost (a kill, a black hole: seconds, not minutes).
MIN_SERVED_PCT = {"web": 97.0, "jobs": 85.0, "gate": 85.0}


def test_a_short_soak_loses_no_acknowledged_write_and_moves_nothing_falsely(tmp_path):
    name = "t" + secrets.token_hex(2)
    out = tmp_path / "soak.json"
    claim(name)  # bench/soak.py makes the cluster; this test owns it
    try:
        proc = subprocess.run([sys.executable, SOAK, "--minutes", str(MINUTES), "--every", str(EVERY),
                               "--seed", str(SEED), "--aim-ledger", "--json", str(out), "--name", name],
                              capture_output=True, text=True, timeout=TIMEOUT)
    finally:
        if name in list_clusters():
            DevCluster(name).down()
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(out.read_text())
    assert [f["kind"] for f in r["faults"]] == ["flap", "cpu", "kill", "blackhole"], r["faults"]
    assert all(f["began"] and f["ended"] for f in r["faults"]), "a fault was not applied and undone"
    ledger = r["ledger"]
    assert not ledger.get("unreadable"), "the ledger's log could not be read after the faults"
    assert ledger["acked"] >= MIN_ACKED, f"only {ledger['acked']} writes were acknowledged"
    assert ledger["lost"] == [], f"acknowledged writes lost: {ledger['lost']}"
    assert ledger["duplicates"] == [], f"writes applied twice: {ledger['duplicates']}"
    assert ledger["out_of_order"] == [], f"writes out of order: {ledger['out_of_order']}"
    assert not any(r["false_downs"].values()), f"machines marked down with no fault on them: {r['false_downs']}"
    assert r["unexplained_failovers"] == 0, "an app failed over while no machine was unreachable"
    for app, least in MIN_SERVED_PCT.items():
        v = r["apps"][app]
        assert v["availability"] >= least, f"{app} answered only {v['availability']:.1f} %: {v}"
