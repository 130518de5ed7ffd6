"""`vcapp doctor`'s judges: what it saw on a machine -> ok / warn / fail and what to do (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vcapp.cli.doctor import report
from vcapp.node import doctor

pytestmark = pytest.mark.unit

V2 = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\nproc /proc proc rw 0 0\n"
HYBRID = ("tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n"
          "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\ncgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n"
          "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n")


def test_cgroup_layouts():
    assert doctor.judge_cgroups(V2, "cpuset cpu io memory pids").status == "ok"
    missing = doctor.judge_cgroups(V2, "cpuset io pids")
    assert missing.status == "fail" and "cpu, memory" in missing.detail and "unified_cgroup_hierarchy" in missing.fix
    assert doctor.judge_cgroups(HYBRID, None).status == "warn"
    no_memory = doctor.judge_cgroups(HYBRID.replace("rw,memory", "rw"), None)
    assert no_memory.status == "fail" and "memory" in no_memory.detail


def test_podman_must_be_4_with_runc():
    info = {"version": {"Version": "4.3.1"}, "host": {"ociRuntime": {"name": "runc", "path": "/usr/sbin/runc"}}}
    assert doctor.judge_runtime(info).status == "ok"
    crun = doctor.judge_runtime({**info, "host": {"ociRuntime": {"name": "crun", "path": "/usr/bin/crun"}}})
    assert crun.status == "warn" and 'runtime = "runc"' in crun.fix
    assert doctor.judge_runtime({**info, "version": {"Version": "3.0.1"}}).status == "fail"
    gone = doctor.judge_runtime(None, "executable file not found")
    assert gone.status == "fail" and "not found" in gone.detail and "apt-get install -y podman" in gone.fix


def test_a_missing_tool_names_its_debian_package():
    assert doctor.judge_tool("etcd", "/usr/bin/etcd").status == "ok"
    missing = doctor.judge_tool("etcd", None)
    assert (missing.status, missing.fix) == ("fail", "apt-get install -y etcd-server")
    assert doctor.judge_tool("fusermount3", None).fix == "apt-get install -y fuse3"


def test_disk_space_thresholds():
    gib = 1 << 30
    assert doctor.judge_disk(Path("/d"), 50 * gib).status == "ok"
    assert doctor.judge_disk(Path("/d"), 5 * gib).status == "warn"
    low = doctor.judge_disk(Path("/d"), gib // 2)
    assert low.status == "fail" and "0.5 GiB free at /d" in low.detail and "podman system prune" in low.fix
    assert doctor.judge_disk(Path("/d"), None).status == "fail"


def test_kernel_versions():
    assert doctor.judge_kernel("6.1.0-13-amd64").status == "ok"
    assert doctor.judge_kernel("4.19.0-20-amd64").status == "fail"
    assert doctor.judge_kernel("weird").status == "warn"


def test_the_daemon_and_its_boot_unit():
    log = Path("/d/log/node.log")
    assert doctor.judge_daemon(42, log, None).status == "ok"
    assert doctor.judge_daemon(42, log, "enabled").detail.endswith("vcapp-node.service enabled")
    disabled = doctor.judge_daemon(42, log, "disabled")
    assert disabled.status == "warn" and disabled.fix == "systemctl enable vcapp-node.service"
    stopped = doctor.judge_daemon(None, log, "enabled")
    assert stopped.status == "fail" and "journalctl -u vcapp-node.service" in stopped.fix
    child = doctor.judge_daemon(None, log, None)
    assert child.status == "fail" and "vcapp node run" in child.fix and str(log) in child.fix


def test_clock_skew_against_the_other_machines():
    assert doctor.judge_skew({"a": 0.02, "b": -0.1}).status == "ok"
    drift = doctor.judge_skew({"a": 0.02, "b": -3.5})
    assert drift.status == "warn" and "-3.50 s (b)" in drift.detail and "NTP" in drift.fix
    far = doctor.judge_skew({"a": 300.0})
    assert far.status == "fail" and "120 s" in far.fix
    assert doctor.judge_skew({"a": None, "b": None}).status == "fail"
    half = doctor.judge_skew({"a": 0.1, "b": None})
    assert half.status == "warn" and "b did not answer" in half.detail
    assert doctor.judge_skew({}).status == "skip"


def test_edge_and_udp():
    assert doctor.judge_edge(None, 200, 2, Path("/n.json")).status == "ok"
    refused = doctor.judge_edge("edge answered 403: revoked", 403, 0, Path("/n.json"))
    assert refused.status == "fail" and "join again" in refused.fix
    silent = doctor.judge_edge("cannot reach the edge", 0, 0, Path("/n.json"))
    assert silent.status == "fail" and "/n.json" in silent.fix
    assert doctor.judge_udp(True, "203.0.113.10:8443").status == "ok"
    blocked = doctor.judge_udp(False, "203.0.113.10:8443")
    assert blocked.status == "warn" and "TCP relay" in blocked.fix
    assert doctor.judge_udp(None, "").status == "skip"


def test_the_report_puts_each_fix_under_its_check_and_counts_the_failures():
    checks = [doctor.Check("kernel", "ok", "Linux 6.1"), doctor.Check("etcd", "fail", "not installed", "apt-get x"),
              doctor.Check("udp", "warn", "no answer", "allow UDP")]
    lines = report(checks).splitlines()
    assert lines[0].startswith("ok    kernel") and lines[1].startswith("FAIL  etcd")
    assert lines[2].strip() == "-> apt-get x" and lines[-1] == "1 problem(s) to fix before vcapp can work here"
    assert doctor.as_json(checks)["ok"] is False
    assert report(checks[:1]).splitlines()[-1] == "this machine can run vcapp"
