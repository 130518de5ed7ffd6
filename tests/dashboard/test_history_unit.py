"""Pure parts of issue 9: history tiers and downsampling over a simulated week, warnings."""

from __future__ import annotations

import json

import pytest

from vcapp.node import meshpath_loop, metrics_loop
from vcapp.state import metrics
from vcapp.views import warnings

pytestmark = pytest.mark.unit

T0 = 1_699_920_000  # a fixed start on a day boundary, like midnight UTC
WEEK = 7 * 86400
HOUR = 3600


def simulate(seconds: int, value, start: int = T0):
    """Ingest a sample every SAMPLE_EVERY_S; returns chunks, the largest size seen, and deleted ids."""
    chunks: metrics.Chunks = {}
    biggest, deleted_all = 0, set()
    for t in range(start, start + seconds, metrics.SAMPLE_EVERY_S):
        changed, deleted = metrics.ingest(chunks, t, value(t))
        deleted_all |= deleted
        if (t - start) % HOUR == 0:
            biggest = max(biggest, metrics.size(chunks))
    return chunks, max(biggest, metrics.size(chunks)), deleted_all


def test_a_week_of_samples_stays_bounded_and_keeps_every_tier():
    # cpu follows the hour of day; the machine is down for the 3rd hour of each day
    def value(t):
        down = ((t - T0) % 86400) // HOUR == 2
        return {"up": 0} if down else {"cpu": float(((t - T0) // HOUR) % 24), "mem": 40.0, "disk": 10.0, "up": 1}

    two_days, size_2d, _ = simulate(2 * 86400, value)
    week, size_week, deleted = simulate(WEEK + 86400, value)
    per_tier = {t.name: sum(1 for c in week if c.startswith(t.name + "/")) for t in metrics.TIERS}
    limits = {t.name: t.span // t.chunk + 1 for t in metrics.TIERS}
    assert all(per_tier[n] <= limits[n] for n in per_tier), (per_tier, limits)
    assert deleted, "old chunks are expired"
    # after 8 days the size has stopped growing: 1m tier is full at 2 d, 15m at 8 d
    assert size_week < 2.5 * size_2d, (size_week, size_2d)
    assert size_week < 400_000, size_week
    assert max(len(json.dumps(c)) for c in week.values()) < 16_000  # one etcd value stays small
    now = T0 + WEEK + 86400 - metrics.SAMPLE_EVERY_S
    # 7 days from the 15 min tier: down 1 hour in 24 -> uptime 23/24
    assert metrics.mean(week, "up", WEEK, now) == pytest.approx(23 / 24, abs=0.01)
    seven = metrics.series(week, WEEK, now)
    assert seven["tier"] == "15m" and len(seven["t"]) >= 7 * 96 - 2
    assert seven["t"][-1] >= now - 900  # reaches up to now
    # an old 15 min bucket holds the mean of the hour's cpu
    old = dict(zip(seven["t"], seven["cols"]["cpu"]))
    t_old = T0 + 86400 + 10 * HOUR + 900
    assert old[t_old] == pytest.approx(10.0)
    # the last hour at full resolution
    hour = metrics.series(week, HOUR, now)
    assert hour["tier"] == "10s" and len(hour["t"]) == HOUR // metrics.SAMPLE_EVERY_S


def test_counters_downsample_with_max_and_gauges_with_mean():
    chunks: metrics.Chunks = {}
    for i, t in enumerate(range(T0, T0 + 2 * HOUR, 10)):
        metrics.ingest(chunks, t, {"restarts": i // 100, "cpu": 10.0 if i % 2 else 30.0})
    rows = dict(metrics.points(chunks, metrics.TIER_BY_NAME["1m"], T0, T0 + 2 * HOUR))
    minute = rows[T0 - T0 % 60 + 60 * 20]
    assert minute["cpu"] == pytest.approx(20.0)
    assert minute["restarts"] == max(i // 100 for i in range(0, 720) if T0 + i * 10 - (T0 + i * 10) % 60 == T0 - T0 % 60 + 1200)


def test_uptime_and_failovers_summary_per_app():
    chunks: metrics.Chunks = {}
    for t in range(T0, T0 + 86400, 10):
        metrics.ingest(chunks, t, {"up": 0 if T0 + 3600 <= t < T0 + 3 * 3600 else 1})
    now = T0 + 86400 - 10
    fail = [(now - 100, "blog"), (now - 3 * 86400, "blog"), (now - 50, "other")]
    s = metrics_loop.app_summary(chunks, fail, "blog", now)
    assert s["uptime_24h"] == pytest.approx(100 * 22 / 24, abs=0.5)
    assert s["failovers_24h"] == 1 and s["failovers_7d"] == 2


def node(name, up=True, free_disk=500, disk=1000, free_mem=800, mem=1000):
    return {"name": name, "up": up, "free_disk_mb": free_disk, "disk_mb": disk,
            "free_memory_mb": free_mem, "memory_mb": mem}


def test_warnings_for_full_machines_flapping_crash_loops_and_relay():
    now = 10_000.0
    inp = warnings.Inputs(
        nodes=[node("a", free_disk=50), node("b", free_mem=20), node("c"), node("d", up=False, free_disk=1)],
        transitions=[(now - 500, "c"), (now - 400, "c"), (now - 300, "c"), (now - 200, "c"), (now - 900, "a")],
        restarts={"crashy": [(now - 200, 1), (now - 100, 3), (now - 10, 5)], "calm": [(now - 200, 7), (now, 7)]},
        mesh={"a": {"b": {"path": "relay-udp", "since": now - 600}, "c": {"path": "direct", "since": now - 600}},
              "b": {"a": {"path": "relay-tcp", "since": now - 10}}},
        now=now)
    found = warnings.compute(inp)
    assert set(found) == {"disk:a", "memory:b", "flapping:c", "crashloop:crashy", "relay:a:b"}
    assert "5% free" in found["disk:a"]["message"] and "vcapp logs crashy" in found["crashloop:crashy"]["message"]
    current, started, cleared = warnings.diff({"disk:a": {"since": 1.0, "message": "x"}, "gone:x": {"message": "y"}},
                                            found, now)
    assert current["disk:a"]["since"] == 1.0 and current["flapping:c"]["since"] == now
    assert {w["id"] for w in started} == set(found) - {"disk:a"}
    assert [w["id"] for w in cleared] == ["gone:x"]


def test_warnings_for_certificates_the_edge_could_not_get_or_renew():
    now = 1_800_000_000.0
    week = warnings.CERT_EXPIRY_WARN_S
    certs = {"shop.example.org": {"state": "failed", "reason": "Connection refused", "not_after": None},
             "old.apps.test": {"state": "expired", "reason": "", "not_after": now - 10},
             "soon.apps.test": {"state": "issued", "reason": "renewal failed: DNS problem", "not_after": now + 3600},
             "fine.apps.test": {"state": "issued", "reason": "", "not_after": now + 3600},
             "later.apps.test": {"state": "issued", "reason": "renewal failed: x", "not_after": now + week + 60},
             "new.apps.test": {"state": "waiting", "reason": "", "not_after": None}}
    found = warnings.compute(warnings.Inputs([], [], {}, {}, now, certificates=certs))
    assert set(found) == {"certificate:shop.example.org", "certificate:old.apps.test", "certificate:soon.apps.test"}
    assert "Connection refused" in found["certificate:shop.example.org"]["message"]
    assert "DNS problem" in found["certificate:soon.apps.test"]["message"]
    assert "2027-01-15" in found["certificate:soon.apps.test"]["message"]  # a date, never a countdown


def test_samples_from_records_and_reports():
    rec = {"name": "a", "up": True, "cpus": 4, "load1": 1.0, "memory_mb": 1000, "free_memory_mb": 250,
           "disk_mb": 100, "free_disk_mb": 90}
    assert metrics_loop.node_sample(rec) == {"cpu": 25.0, "mem": 75.0, "disk": 10.0, "up": 1}
    assert metrics_loop.node_sample(dict(rec, up=False)) == {"up": 0}
    reports = [{"state": "running", "health": "healthy", "cpu_percent": 1.5, "memory_mb": 10, "restarts": 2},
               {"state": "exited", "health": "-", "cpu_percent": None, "memory_mb": None, "restarts": 4}]
    assert metrics_loop.app_sample({"image": "x", "count": 2}, reports) == \
        {"cpu": 1.5, "mem_mb": 10, "healthy": 1, "restarts": 6, "up": 1}
    assert "up" not in metrics_loop.app_sample({"image": "", "count": 1}, [])
    paths = meshpath_loop.mesh_paths({"peers": [{"node": "b", "path": "relay-udp"}]},
                                    {"b": {"path": "relay-udp", "since": 5.0}}, 100.0)
    assert paths["b"]["since"] == 5.0


def test_uptime_is_weighted_by_time_while_history_is_young():
    """Ten minutes of history, down for the first two: every window says 80 %."""
    chunks: metrics.Chunks = {}
    for t in range(T0, T0 + 600, 10):
        metrics.ingest(chunks, t, {"up": 0 if t < T0 + 120 else 1})
    now = T0 + 590
    for seconds in (HOUR, 86400, WEEK):
        assert metrics.mean(chunks, "up", seconds, now) == pytest.approx(0.8, abs=0.02), seconds
