"""An instance's report is rewritten at once when its state changes, when its usage moved
after a few seconds, and once a minute anyway (vcapp/node/runtime_loop.py report_due): every
write is an etcd revision that makes every machine read the cluster afresh."""

from __future__ import annotations

from vcapp.node import runtime_loop
from vcapp.node.runtime_loop import report_due

WRITTEN = {"release": "3", "state": "running", "health": "healthy", "restarts": 0, "host_port": 20001,
           "container": "vc-blog-0-r3", "message": "HTTP 200 from /", "cpu_percent": 0.4, "memory_mb": 41.0,
           "updated_at": 1000.0}
REFRESH, MAX_AGE = runtime_loop.STATUS_REFRESH_S, runtime_loop.STATUS_MAX_AGE_S


def now(**changes) -> dict:
    return dict(WRITTEN, updated_at=1003.0, **changes)


def test_a_change_of_state_is_written_at_once():
    for field, value in [("health", "unhealthy"), ("restarts", 1), ("release", "4"), ("host_port", 20002),
                         ("state", "exited"), ("message", "HTTP 500 from /")]:
        assert report_due(WRITTEN, now(**{field: value}), 0.5), field


def test_an_idle_apps_usage_noise_is_not_written_until_the_minute():
    idle = now(cpu_percent=0.9, memory_mb=42.5)
    assert not report_due(WRITTEN, idle, REFRESH)
    assert not report_due(WRITTEN, idle, MAX_AGE - 1)
    assert report_due(WRITTEN, idle, MAX_AGE)


def test_usage_that_moved_is_written_after_the_refresh_period():
    busy = now(cpu_percent=35.0)
    assert not report_due(WRITTEN, busy, REFRESH - 1)
    assert report_due(WRITTEN, busy, REFRESH)
    assert report_due(WRITTEN, now(memory_mb=120.0), REFRESH)
    assert report_due(WRITTEN, now(cpu_percent=None, memory_mb=None), REFRESH)  # the container stopped
    assert report_due(dict(WRITTEN, cpu_percent=None), now(), REFRESH)  # its first CPU figure
