"""Pure logic of storage/: replication codes, the storage plan, the writer guard, parsers."""

from __future__ import annotations

import json

import pytest

from storage import evacuate, guard, mount, replication
from storage.mount import mount_entry
from storage.plan import Machine, ProcessSpec, machine_processes, plan_cluster
from storage.shell import parse_volume_list
from storage.volumes import rule_command, under_replicated
from vcapp.state import keys

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("sites, code", [
    (["home"] * 3, "020"),                        # one site: three machines of it
    (["home"] * 5, "020"),                        # never more than 3 copies
    (["home", "home", "office"], "110"),          # a copy in the other site
    (["home", "office", "lab"], "200"),           # one copy per site
    (["home", "home", "office", "office"], "110"),
    (["home", "home"], "010"),                    # degraded: two machines, one site
    (["home", "office"], "100"),                  # degraded: one machine per site
    (["home"], "000"),                            # last machine standing
])
def test_code_follows_the_live_machines(sites, code):
    chosen = replication.choose_code(sites)
    assert chosen == code
    assert replication.feasible(chosen, sites)
    assert replication.copies(chosen) == min(3, len(sites))


def test_state_is_degraded_below_three_copies():
    assert replication.state("110") == "healthy"
    assert replication.state("010") == "degraded"


def test_no_live_machine_is_an_error_saying_what_to_do():
    with pytest.raises(replication.ReplicationError, match="revive"):
        replication.choose_code([])


def test_infeasible_codes_are_detected():
    assert not replication.feasible("020", ["home", "home", "office"])  # only 2 racks in home
    assert not replication.feasible("001", ["home"] * 3)  # one server per rack
    assert not replication.feasible("200", ["home", "home", "office"])  # only 2 sites


MACHINES = [Machine(f"m{i}", "home" if i < 3 else "office", f"10.0.0.{i}") for i in range(1, 6)]


def test_plan_puts_three_masters_on_the_first_machines_and_everything_else_everywhere():
    plan = plan_cluster(list(reversed(MACHINES)), ["10.0.0.1:2379"], keys.SEAWEEDFS)
    assert [m.name for m in plan.masters] == ["m1", "m2", "m3"]
    assert plan.default_replication == "110"
    for m in MACHINES:
        specs = {s.name: s for s in machine_processes(plan, m.name)}
        assert set(specs) == ({"master", "volume", "filer"} if m in plan.masters else {"volume", "filer"})
        vol = specs["volume"].argv
        assert f"-dataCenter={m.site}" in vol and f"-rack={m.name}" in vol
        assert "-master=10.0.0.1:9333,10.0.0.2:9333,10.0.0.3:9333" in vol
        filer = specs["filer"]
        assert "-s3" in filer.argv and "-defaultReplicaPlacement=110" in filer.argv
        assert 'servers = "10.0.0.1:2379"' in filer.files["filer.toml"]
        assert "[leveldb2]\nenabled = false" in filer.files["filer.toml"]


def test_small_clusters_run_one_master_without_peers():
    plan = plan_cluster(MACHINES[:2], ["10.0.0.1:2379"], keys.SEAWEEDFS)
    assert [m.name for m in plan.masters] == ["m1"]
    master = machine_processes(plan, "m1")[0]
    assert master.name == "master" and "-peers=none" in master.argv
    # no Raft state resumed: a retired master its leader admitted would stay a peer for good
    assert "-resumeState=false" in master.argv and "-raftHashicorp" not in master.argv
    three = machine_processes(plan_cluster(MACHINES[:3], ["10.0.0.1:2379"], keys.SEAWEEDFS), "m1")[0]
    assert "-raftHashicorp" in three.argv and "-resumeState=false" not in three.argv


def test_an_evacuated_machine_runs_no_volume_server_and_the_others_keep_theirs():
    plan = plan_cluster(MACHINES, ["10.0.0.1:2379"], keys.SEAWEEDFS, volume_off=frozenset({"m2", "gone"}))
    assert plan.volume_off == {"m2"}
    assert [s.name for s in machine_processes(plan, "m2")] == ["master", "filer"]  # still a master and a filer
    assert [s.name for s in machine_processes(plan, "m3")] == ["master", "volume", "filer"]
    # new volumes' default placement fits the machines that keep data
    assert plan_cluster(MACHINES[:3], ["e:2379"], keys.SEAWEEDFS).default_replication == "110"
    assert plan_cluster(MACHINES[:3], ["e:2379"], keys.SEAWEEDFS, volume_off=frozenset({"m3"})).default_replication \
        == "010"  # m3, the one office machine, keeps nothing


def test_evacuation_finds_the_copies_on_one_server_and_room_elsewhere():
    copies = parse_volume_list(VOLUME_LIST)
    assert evacuate.copies_on(copies, "10.1.0.11:8080") == [1, 7]
    assert evacuate.copies_on(copies, "10.1.0.13:8080") == []
    assert evacuate.room_for(["home", "home", "office"]) and evacuate.room_for(["home"] * 3)
    assert not evacuate.room_for(["home", "office"]) and not evacuate.room_for([])
    assert evacuate.room_for(["home", "office"], copies=2)


def test_plan_needs_etcd():
    with pytest.raises(ValueError, match="etcd"):
        plan_cluster(MACHINES, [], keys.SEAWEEDFS)


def test_filer_list_puts_the_local_filer_first():
    plan = plan_cluster(MACHINES, ["e:2379"], keys.SEAWEEDFS)
    assert plan.filer_list(plan.machine("m4")).split(",")[0] == "10.0.0.4:8888"


def test_rules_ask_for_fsync_and_a_growth_count_the_engine_accepts():
    line = rule_command("/volumes/a/b/", "vol_a_b", "010")
    assert "-fsync" in line and "-replication=010" in line and "-volumeGrowthCount=2" in line
    assert "-collection" not in rule_command("/buckets/a/", "", "020")  # buckets keep their own


VOLUME_LIST = """\
Topology volumeSizeLimit:1024 MB hdd(volume:9/600 active:9 free:591 remote:0)
  DataCenter home hdd(volume:9/600 active:9 free:591 remote:0)
    Rack home-1 hdd(volume:3/200 active:3 free:197 remote:0)
      DataNode 10.1.0.11:8080 hdd(volume:3/200 active:3 free:197 remote:0)
        Disk hdd(volume:3/200 active:3 free:197 remote:0) id:0
          volume Id:1, Size:8, ReplicaPlacement:020, Collection:vol_a_b, Version:3, Ttl:, FileCount:0, DeleteCount:0, DeletedByteCount:0, ReadOnly:false, ModifiedAtSecond:1
          volume Id:7, Size:8, ReplicaPlacement:010, Collection:vol_a_b, Version:3, Ttl:, FileCount:2, DeleteCount:0, DeletedByteCount:0, ReadOnly:false, ModifiedAtSecond:1
    Rack home-2 hdd(volume:3/200 active:3 free:197 remote:0)
      DataNode 10.1.0.12:8080 hdd(volume:3/200 active:3 free:197 remote:0)
          volume Id:1, Size:8, ReplicaPlacement:020, Collection:vol_a_b, Version:3, Ttl:, FileCount:0, DeleteCount:0, DeletedByteCount:0, ReadOnly:true, ModifiedAtSecond:1
          volume Id:7, Size:8, ReplicaPlacement:010, Collection:vol_a_b, Version:3, Ttl:, FileCount:2, DeleteCount:0, DeletedByteCount:0, ReadOnly:false, ModifiedAtSecond:1
"""


def test_volume_list_is_parsed_per_copy_and_short_volumes_found():
    copies = parse_volume_list(VOLUME_LIST)
    assert [(c["id"], c["node"], c["replication"]) for c in copies] == [
        (1, "10.1.0.11:8080", "020"), (7, "10.1.0.11:8080", "010"),
        (1, "10.1.0.12:8080", "020"), (7, "10.1.0.12:8080", "010")]
    assert copies[2]["read_only"] and copies[1]["files"] == 2
    # 1 lost a copy of its 3; 7 has its 2 but 3 are wanted again
    assert set(under_replicated(copies, "020")) == {1, 7}
    assert set(under_replicated(copies, "010")) == {1}


def test_mount_entry_reads_the_kernel_table(tmp_path):
    table = tmp_path / "mountinfo"
    table.write_text(
        "22 1 8:1 / / rw - ext4 /dev/vda rw\n"
        "130 27 0:57 / /run/vc/x/vol\\040a rw,nosuid - fuse.seaweedfs 10.1.0.11:8888:/volumes/a/b rw\n"
    )
    assert mount_entry(tmp_path / "nothing", str(table)) is None
    assert mount_entry("/", str(table))["fstype"] == "ext4"
    entry = mount_entry("/run/vc/x/vol a", str(table))
    assert entry["fstype"] == "fuse.seaweedfs" and entry["source"].endswith(":/volumes/a/b")


def test_a_mount_log_is_kept_across_mounts_and_moved_aside_once_large(tmp_path, monkeypatch):
    monkeypatch.setattr(mount, "MOUNT_LOG_MAX_BYTES", 100)
    log = mount.log_path(tmp_path, "blog", "data")
    assert mount._rotated(log) == log and not log.exists()  # a first mount: nothing to move
    log.write_text("first mount\n")
    assert mount._rotated(log) == log and log.read_text() == "first mount\n"  # appended to next
    log.write_text("x" * 101)
    mount._rotated(log)
    assert not log.exists() and (tmp_path / "mount-blog_data.log.1").read_text() == "x" * 101


class MemoryStore:
    """A stand-in for etcd's transactions, for the pure rules of the writer guard."""

    def __init__(self):
        self.kv: dict[str, str] = {}

    def get(self, key):
        return self.kv.get(key)

    def put_if_absent(self, key, value):
        if key in self.kv:
            return False
        self.kv[key] = value
        return True

    def delete_if_equal(self, key, value):
        if self.kv.get(key) != value:
            return False
        del self.kv[key]
        return True


def test_one_writer_per_volume():
    store = MemoryStore()
    assert guard.acquire_writer(store, "blog", "data", "home-1", "i1") == {"node": "home-1", "instance": "i1"}
    assert guard.acquire_writer(store, "blog", "data", "home-1", "i1")  # again: still ours
    with pytest.raises(guard.WriterConflict, match="held for writing by home-1"):
        guard.acquire_writer(store, "blog", "data", "home-2", "i2")
    assert guard.acquire_writer(store, "blog", "other", "home-2", "i2")  # another volume is free
    assert not guard.release_writer(store, "blog", "data", "home-2", "i2")  # not the holder
    assert guard.release_writer(store, "blog", "data", "home-1", "i1")
    assert guard.acquire_writer(store, "blog", "data", "home-2", "i2")


def test_a_volume_taken_over_is_mounted_afresh_and_one_still_held_is_not():
    """take_writer says whether the key was just taken: only then may a mount kept from
    before have missed another machine's writes (storage.mount.mount_volume's `fresh`)."""
    store = MemoryStore()
    assert guard.take_writer(store, "blog", "data", "home-1", "i1") == ({"node": "home-1", "instance": "i1"}, True)
    assert guard.take_writer(store, "blog", "data", "home-1", "i1")[1] is False  # still ours: keep the mount
    assert guard.release_writer(store, "blog", "data", "home-1", "i1")
    assert guard.take_writer(store, "blog", "data", "home-1", "i1")[1] is True  # gone and back: mount afresh


def test_lease_expiry_frees_the_volume():
    store = MemoryStore()
    guard.acquire_writer(store, "blog", "data", "home-1", "i1")
    store.kv.pop(guard.writer_key("blog", "data"))  # etcd deletes keys of an expired lease
    assert guard.acquire_writer(store, "blog", "data", "home-2", "i2")["node"] == "home-2"


def test_decide_is_pure():
    assert guard.decide(None, "a", "i") == guard.Decision(True, True, None)
    assert not guard.decide({"node": "b", "instance": "j"}, "a", "i").granted
    assert not guard.decide({"node": "a", "instance": "old"}, "a", "i").granted  # another instance


def test_the_storage_daemon_starts_what_is_missing_restarts_what_changed_and_stops_what_is_gone():
    from storage.storaged import Start, Stop, decide, spec_digest
    master = ProcessSpec("master", ("weed", "master", "-port=9333"), "master")
    volume = ProcessSpec("volume", ("weed", "volume", "-port=8080"), "volume")
    moved = ProcessSpec("volume", ("weed", "volume", "-port=8080", "-mserver=b:9333"), "volume")
    # nothing runs (a booted machine): both start
    assert decide([master, volume], {}) == [Start(master), Start(volume)]
    # both run as planned: nothing to do
    assert decide([master, volume], {"master": spec_digest(master), "volume": spec_digest(volume)}) == []
    # the volume server's spec changed (another master list): only it restarts
    assert decide([master, moved], {"master": spec_digest(master), "volume": spec_digest(volume)}) == [Start(moved)]
    # the plan no longer has a master here (the cluster grew past 3): it stops, the filer too
    assert decide([volume], {"master": spec_digest(master), "volume": spec_digest(volume), "filer": "x"}) == [
        Stop("filer"), Stop("master")]
    # what the plan retires stops before anything restarts (a retired master must be gone
    # before the lone one starts)
    assert decide([moved], {"master": spec_digest(master), "volume": spec_digest(volume)}) == [
        Stop("master"), Start(moved)]


class StatusHost:
    """A machine whose master answers /cluster/status with `body` (a unit-test stand-in)."""

    def __init__(self, name: str, body: str, code: int = 0) -> None:
        self.name, self.body, self.code, self.asked = name, body, code, []

    def run(self, argv, *, input=None, timeout=60):
        import subprocess
        self.asked.append(argv[-1])
        return subprocess.CompletedProcess(argv, self.code, self.body, "")


def test_a_lone_master_with_raft_peers_is_told_apart_from_a_healthy_one():
    from storage.storaged import stray_peers
    lone = plan_cluster(MACHINES[:2], ["10.0.0.1:2379"], keys.SEAWEEDFS)
    stray = StatusHost("m1", '{"Peers":["10.0.0.3:9333.19333"],"MaxVolumeId":6}')
    assert stray_peers(lone, stray) == ["10.0.0.3:9333.19333"]
    assert stray.asked == ["http://10.0.0.1:9333/cluster/status"]
    assert stray_peers(lone, StatusHost("m1", '{"IsLeader":true,"Leader":"10.0.0.1:9333"}')) == []
    assert stray_peers(lone, StatusHost("m1", "", code=7)) == []  # not up yet: nothing to say
    assert stray_peers(lone, StatusHost("m1", "<html>")) == []
    # not the lone master: a machine without one, and a member of three Raft masters
    for plan, name in ((lone, "m2"), (plan_cluster(MACHINES[:3], ["10.0.0.1:2379"], keys.SEAWEEDFS), "m1")):
        host = StatusHost(name, '{"Peers":["10.0.0.3:9333.19333"]}')
        assert stray_peers(plan, host) == [] and host.asked == []


def test_the_shell_dials_the_leader_the_masters_name_first_and_waits_while_it_is_gone():
    from storage.shell import order_masters
    a, b, c = "10.0.0.1:9333", "10.0.0.2:9333", "10.0.0.3:9333"
    named_b = {"Leader": "10.0.0.2:9333.19333"}
    assert order_masters({a: named_b, b: dict(named_b, IsLeader=True), c: named_b}) == ([b, a, c], True)
    # the leader's machine is gone, and the others still name it: no shell can connect yet
    assert order_masters({a: named_b, b: None, c: named_b}) == ([a, c], False)
    # an election under way names no leader
    assert order_masters({a: {"Leader": ""}, b: None, c: {}}) == ([a, c], False)
    assert order_masters({a: None, b: None, c: None}) == ([], False)
    # a lone master names itself without Raft's gRPC port, or only says it leads
    assert order_masters({a: {"IsLeader": True, "Leader": a}}) == ([a], True)
    assert order_masters({a: {"IsLeader": True}}) == ([a], True)


class ElectingHost:
    """Three masters: 10.0.0.1's machine is gone, and the others name it leader for
    `rounds` probes before they name 10.0.0.2."""

    name = "m2"

    def __init__(self, rounds: int) -> None:
        self.rounds, self.asked = rounds, []

    def run(self, argv, *, input=None, timeout=60):
        import subprocess
        self.asked.append(argv[-1])
        if "//10.0.0.1:" in argv[-1]:
            return subprocess.CompletedProcess(argv, 28, "", "")  # curl: timed out
        elected = sum("//10.0.0.2:" in u for u in self.asked) > self.rounds
        leader = "10.0.0.2:9333.19333" if elected else "10.0.0.1:9333.19333"
        return subprocess.CompletedProcess(argv, 0, json.dumps({"Leader": leader}), "")


def test_live_masters_asks_again_until_the_leader_they_name_answers(monkeypatch):
    from storage import shell
    plan = plan_cluster(MACHINES[:3], ["10.0.0.1:2379"], keys.SEAWEEDFS)
    monkeypatch.setattr(shell, "LEADER_POLL_S", 0.01)
    host = ElectingHost(rounds=2)
    assert shell.live_masters(plan, host) == ["10.0.0.2:9333", "10.0.0.3:9333"]
    assert sum("//10.0.0.2:" in u for u in host.asked) == 3
    # no leader that answers within the wait: the masters that answer, as they are
    assert shell.live_masters(plan, ElectingHost(rounds=10**6), wait=0.05) == ["10.0.0.2:9333", "10.0.0.3:9333"]
