"""The chaos soak's schedule and checker (bench/soak.py): what it reports as lost must be what
was lost (pure)."""

from __future__ import annotations

from bench.soak import Fault, app_figures, false_downs, ledger_check, per_fault, schedule

MACHINES = ["home-1", "home-2", "office-1"]
SITES = {"home-1": "home", "home-2": "home", "office-1": "office"}


def row(t: float, ok: bool = True, app: str = "web", wid: str | None = None, latency: float = 0.1) -> dict:
    return {"app": app, "t": t, "ok": ok, "latency": latency, "outcome": "200" if ok else "502",
            **({"id": wid} if wid is not None else {})}


def test_a_seed_replays_the_same_schedule_and_a_long_run_meets_every_fault_kind():
    one = schedule(7, 60, 120, MACHINES, SITES)
    assert [(f.at, f.kind, f.targets) for f in one] == [(f.at, f.kind, f.targets) for f in schedule(7, 60, 120, MACHINES, SITES)]
    assert len(one) == 29 and [f.at for f in one[:2]] == [120, 240]
    assert {f.kind for f in one} == {"kill", "blackhole", "partition", "flap", "edge-restart", "nat-hard", "cpu",
                                     "kill-two", "all-off"}
    assert sum(f.kind == "all-off" for f in one) == 1
    assert all(len(f.targets) == 2 for f in one if f.kind == "kill-two")  # one machine stays up
    assert all(f.targets[0] in {"home", "office"} for f in one if f.kind == "nat-hard")
    short = schedule(9, 4.5, 50, MACHINES, SITES)
    assert len(short) == 4 and "all-off" not in {f.kind for f in short}


def test_availability_and_the_longest_outage_with_the_fault_it_fell_in():
    kill = Fault(10, "kill", ["home-1"], 40, began=1000.0, ended=1040.0)
    rows = [row(990 + i) for i in range(12)] + [row(1002 + i, ok=False) for i in range(5)] + [row(1007 + i) for i in range(3)]
    got = app_figures(rows, [kill])
    assert got["sent"] == 20 and got["ok"] == 15 and got["availability"] == 75.0
    assert got["longest_outage_s"] == 5.0 and got["outage_fault"] == "kill home-1"
    assert got["failed_by_fault"] == {"kill": 5}


def test_lost_duplicated_and_reordered_writes_are_found():
    rows = [row(1.0, app="ledger", wid="1"), row(2.0, app="ledger", wid="2"), row(3.0, app="ledger", wid="3"),
            row(4.0, ok=False, app="ledger", wid="4"), row(5.0, app="ledger", wid="5")]
    assert ledger_check(rows, ["id=1", "id=2", "id=3", "id=4", "id=5"]) == {
        "acked": 4, "in_log": 5, "lost": [], "duplicates": [], "out_of_order": [], "unacked_but_written": 1,
        "garbled": 0, "garbled_sample": [], "holes": 0}
    # 3 acknowledged but gone; 2 written twice; 5 (sent after 1 was acknowledged) logged before 1
    got = ledger_check(rows, ["id=5", "id=1", "id=2", "id=2"])
    assert got["lost"] == ["3"] and got["duplicates"] == ["2"] and got["out_of_order"] == ["5"]
    # writes in flight together may land in either order
    overlapping = [row(1.0, app="ledger", wid="1", latency=3.0), row(2.0, app="ledger", wid="2")]
    assert ledger_check(overlapping, ["id=2", "id=1"])["out_of_order"] == []
    # zeros where an unacknowledged append's data never landed, before a whole write: a hole,
    # and the write after it counts (seen in a soak: "\0" * 8 + "id=1715", the write before it sent
    # to a machine cut off mid-write)
    holed = ledger_check(rows, ["id=1", "\0\0\0\0\0\0\0\0id=2", "id=3", "id=5"])
    assert holed["lost"] == [] and holed["holes"] == 1 and holed["garbled"] == 0
    # zeros inside or after a write garble it: its id is not trusted, so an acknowledged one is lost
    torn = ledger_check(rows, ["id=1", "id=2\0\0\0\0", "\0\0id=\0\03", "id=5"])
    assert torn["lost"] == ["2", "3"] and torn["garbled"] == 2 and torn["holes"] == 0


def test_a_machine_marked_down_without_a_fault_on_it_is_a_false_failover():
    partition = Fault(10, "partition", ["home-2"], 30, began=1000.0, ended=1030.0)
    cpu = Fault(20, "cpu", ["home-1"], 30, began=1100.0, ended=1130.0)
    events = [{"kind": "node.down", "node": "home-2", "time": 1005.0},  # explained
              {"kind": "node.down", "node": "home-2", "time": 1040.0},  # within the grace after it
              {"kind": "node.down", "node": "home-1", "time": 1110.0},  # CPU load is no reason
              {"kind": "node.up", "node": "office-1", "time": 1111.0}]
    assert false_downs(events, [partition, cpu], MACHINES) == {"home-1": [1110.0], "home-2": [], "office-1": []}


def test_each_fault_slot_counts_its_own_failures():
    faults = [Fault(10, "flap", ["home-1"], 10, began=100.0, ended=110.0),
              Fault(20, "kill", ["home-2"], 40, began=200.0, ended=240.0)]
    rows = [row(150.0), row(205.0, ok=False), row(206.0, ok=False), row(209.0)]
    slots = per_fault(rows, faults, ["web"])
    assert slots[0]["web"] == {"sent": 1, "failed": 0, "outage_s": 0.0}
    assert slots[1]["web"] == {"sent": 3, "failed": 2, "outage_s": 4.0}
