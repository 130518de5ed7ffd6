"""The pure reconcile: desired specs + observed containers -> actions, as tables."""

from __future__ import annotations

import pytest

from runtime.book import Book
from runtime.podman import Container, PodmanDriver
from runtime.reconcile import (BACKOFF_RESET_AFTER_S, RESTART_BACKOFF_MAX_S, UNHEALTHY_RESTART_AFTER, Create,
                               Observed, Remove, Replace, Restart, Wait, backoff_s, reconcile)
from runtime.spec import InstanceSpec, SpecError, VolumeMount

pytestmark = pytest.mark.unit

NOW = 10_000.0


def spec(app="web", inst="0", release="1") -> InstanceSpec:
    return InstanceSpec(app=app, instance=inst, release=release, image="img", port=8080)


def ctr(app="web", inst="0", release="1", state="running", started=NOW - 100, exited=0.0, code=0) -> Container:
    return Container(id=f"{app}{inst}{release}", name=f"vc-{app}-{inst}-r{release}", app=app, instance=inst,
                     release=release, state=state, exit_code=code, started_at=started, exited_at=exited,
                     host_port=20000, pid=1)


def obs(c: Container, health="healthy", failures=0) -> Observed:
    return Observed(c, health, failures)


def kinds(actions):
    return [(type(a).__name__, getattr(a, "name", None) or getattr(getattr(a, "spec", None), "container_name", None))
            for a in actions]


TABLE = [
    ("nothing runs: create", [spec()], [], Book(), [("Create", "vc-web-0-r1")]),
    ("running and healthy: nothing", [spec()], [obs(ctr())], Book(), []),
    ("starting: nothing yet", [spec()], [obs(ctr(), "starting", 1)], Book(), []),
    ("not desired: remove", [], [obs(ctr())], Book(), [("Remove", "vc-web-0-r1")]),
    ("crashed, back-off passed: restart", [spec()], [obs(ctr(state="exited", started=NOW - 5, exited=NOW - 2, code=1))],
     Book(), [("Restart", "vc-web-0-r1")]),
    ("crashed, inside back-off: wait", [spec()],
     [obs(ctr(state="exited", started=NOW - 5, exited=NOW - 2, code=1))], Book(streak={"web/0": 3}),
     [("Wait", None)]),
    ("crash after a long run resets back-off", [spec()],
     [obs(ctr(state="exited", started=NOW - BACKOFF_RESET_AFTER_S - 10, exited=NOW - 1.5, code=1))],
     Book(streak={"web/0": 5}), [("Restart", "vc-web-0-r1")]),
    ("created but never started: start now", [spec()], [obs(ctr(state="created", started=0))], Book(),
     [("Restart", "vc-web-0-r1")]),
    ("unhealthy too long: restart", [spec()], [obs(ctr(), "unhealthy", UNHEALTHY_RESTART_AFTER)], Book(),
     [("Restart", "vc-web-0-r1")]),
    ("unhealthy once: wait it out", [spec()], [obs(ctr(), "unhealthy", 1)], Book(), []),
    ("new release, old serving: replace", [spec(release="2")], [obs(ctr())], Book(), [("Replace", "vc-web-0-r2")]),
    ("new release failed before: old keeps serving", [spec(release="2")], [obs(ctr())],
     Book(failed={"web/0": {"release": "2", "reason": "HTTP 500"}}), [("Wait", None)]),
    ("a later release is tried even after a failed one", [spec(release="3")], [obs(ctr())],
     Book(failed={"web/0": {"release": "2", "reason": "HTTP 500"}}), [("Replace", "vc-web-0-r3")]),
    ("new release, old crashed: no need to wait, swap", [spec(release="2")],
     [obs(ctr(state="exited", exited=NOW - 1, code=1))], Book(),
     [("Remove", "vc-web-0-r1"), ("Create", "vc-web-0-r2")]),
    ("interrupted replace, new healthy: drop old", [spec(release="2")],
     [obs(ctr()), obs(ctr(release="2"))], Book(), [("Remove", "vc-web-0-r1")]),
    ("interrupted replace, new not healthy: drop new", [spec(release="2")],
     [obs(ctr()), obs(ctr(release="2"), "starting")], Book(), [("Remove", "vc-web-0-r2")]),
    ("other apps untouched, two instances", [spec(), spec(inst="1"), spec(app="api")],
     [obs(ctr()), obs(ctr(app="api"))], Book(), [("Create", "vc-web-1-r1")]),
]


@pytest.mark.parametrize("case,desired,actual,book,expected", TABLE, ids=[t[0] for t in TABLE])
def test_reconcile_table(case, desired, actual, book, expected):
    assert kinds(reconcile(desired, actual, book, NOW)) == expected


def test_reconcile_is_repeatable():
    desired, actual = [spec(release="2"), spec(inst="1")], [obs(ctr()), obs(ctr(app="old"))]
    assert reconcile(desired, actual, Book(), NOW) == reconcile(desired, actual, Book(), NOW)


def test_instances_without_volumes_start_before_those_with_volumes():
    # A failover moves a volume app ("a/0") and a web app ("z/0") here in one pass: the web
    # app's start must not wait for the volume's mount and the storage's readiness.
    ledger = InstanceSpec(app="a", instance="0", release="1", image="img", port=8080,
                          volumes=(VolumeMount("data", "/data"),))
    gone = obs(ctr(app="old", inst="0"))
    actions = reconcile([ledger, spec(app="z")], [gone], Book(), NOW)
    assert kinds(actions) == [("Remove", "vc-old-0-r1"), ("Create", "vc-z-0-r1"), ("Create", "vc-a-0-r1")]


def test_backoff_doubles_then_caps():
    assert [backoff_s(n) for n in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff_s(50) == RESTART_BACKOFF_MAX_S


def test_restart_carries_growing_streak_and_reason():
    a = reconcile([spec()], [obs(ctr(state="exited", started=NOW - 9, exited=NOW - 5, code=137))],
                  Book(streak={"web/0": 2}), NOW)
    assert isinstance(a[0], Restart) and a[0].streak == 3 and "exited with code 137" in a[0].reason
    w = reconcile([spec()], [obs(ctr(state="exited", started=NOW - 9, exited=NOW - 1, code=1))],
                  Book(streak={"web/0": 2}), NOW)
    assert isinstance(w[0], Wait) and "restarting in 3s (back-off 4s)" in w[0].reason


def test_failed_release_reason_is_reported():
    (w,) = reconcile([spec(release="2")], [obs(ctr())],
                     Book(failed={"web/0": {"release": "2", "reason": "HTTP 500 from /healthz"}}), NOW)
    assert w.reason == "release 2 failed its health check: HTTP 500 from /healthz; release 1 keeps serving"


def test_spec_from_assignment_hides_secrets_and_checks_names():
    s = InstanceSpec.from_assignment(
        {"app": "blog", "instance": "0", "release": 3, "image": "i", "port": 8080, "memory_mb": 128,
         "secrets": ["DB"], "health": {"type": "http", "path": "/up"}}, {"DB": "hunter2", "OTHER": "x"})
    assert s.secrets == {"DB": "hunter2"} and "hunter2" not in repr(s)
    assert s.container_name == "vc-blog-0-r3" and s.health.path == "/up"
    with pytest.raises(SpecError, match="vcapp secrets set blog"):
        InstanceSpec.from_assignment({"app": "blog", "instance": "0", "image": "i", "secrets": ["DB"]}, {})
    with pytest.raises(SpecError, match="not a valid name"):
        InstanceSpec.from_assignment({"app": "Blog!", "instance": "0", "image": "i"})


def test_run_args_carry_limits_labels_network_and_cgroup_but_no_secret_values():
    s = InstanceSpec.from_assignment({"app": "blog", "instance": "1", "release": 2, "image": "img", "port": 80,
                                      "memory_mb": 64, "cpus": 0.5, "pids": 100, "secrets": ["DB"]},
                                     {"DB": "hunter2"})
    args = PodmanDriver(cgroup_parent="/vcapp/x/home-1", publish_ip="0.0.0.0").run_args(s, 20005, "/run/env")
    joined = " ".join(args)
    for want in ("--memory 64m", "--memory-swap 64m", "--cpus 0.5", "--pids-limit 100", "--network vc-app-blog",
                 "--cgroup-parent /vcapp/x/home-1", "-p 0.0.0.0:20005:80", "--label vcapp.app=blog",
                 "--label vcapp.instance=1", "--label vcapp.release=2", "--env-file /run/env"):
        assert want in joined
    assert "hunter2" not in joined
