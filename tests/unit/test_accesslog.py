"""Reading a node router's access log for `vcapp logs` (router/accesslog.py) and the --since
times it takes (vcapp/api/logs.py)."""

import json
import threading
import time

import pytest

from router import accesslog
from vcapp.api.logs import since_time
from vcapp.errors import BadRequest

pytestmark = pytest.mark.unit
HOSTS = {"blog.apps.test", "www.blog.org"}


def line(path: str = "/", host: str = "blog.apps.test", status: int = 200, upstream: str = "127.0.0.1:40001",
         server: str = "node", ts: float = 1000.0) -> str:
    return json.dumps({"level": "info", "ts": ts, "logger": f"http.log.access.{server}", "msg": "handled request",
                       "request": {"client_ip": "203.0.113.9", "method": "GET", "host": host, "uri": path},
                       "status": status, "duration": 0.0123, "size": 193, "upstream": upstream}) + "\n"


def test_a_line_becomes_the_fields_shown_and_names_its_instance():
    entry = accesslog.parse(line("/a?b=1", host="Blog.Apps.Test:443"))
    assert entry.host == "blog.apps.test" and entry.server == "node" and entry.local
    shown = accesslog.format_line(entry, {"127.0.0.1:40001": "0"}.get)
    assert shown == 'method=GET path="/a?b=1" status=200 service=12ms bytes=193 fwd="203.0.113.9" instance=0'
    assert accesslog.parse("not json") is None and accesslog.parse('{"msg": "x"}') is None


def test_only_the_apps_hosts_since_the_time_and_not_a_request_passed_to_another_router():
    passed_on = accesslog.parse(line(upstream="100.96.0.6:7081"))
    assert not accesslog.shown(passed_on, HOSTS)  # the router it went to logs it, with the instance
    assert accesslog.shown(accesslog.parse(line(upstream="100.96.0.6:7081", status=502)), HOSTS)  # it never got there
    assert accesslog.shown(accesslog.parse(line(server="hop")), HOSTS)
    assert accesslog.shown(accesslog.parse(line(upstream="", status=401)), HOSTS)  # refused before any instance
    assert not accesslog.shown(accesslog.parse(line(host="shop.apps.test")), HOSTS)
    assert accesslog.shown(accesslog.parse(line(host="www.blog.org")), HOSTS)
    assert not accesslog.shown(accesslog.parse(line(ts=999.0)), HOSTS, since=1000.0)


def test_reading_gives_the_last_lines_then_follows_across_a_roll(tmp_path):
    path = tmp_path / "access.log"
    path.write_text(line("/1") + line("/x", host="shop.apps.test") + line("/2") + line("/3"))
    assert [e.path for e in accesslog.read(path, HOSTS)] == ["/1", "/2", "/3"]
    assert [e.path for e in accesslog.read(path, HOSTS, tail=2)] == ["/2", "/3"]
    stop = threading.Event()
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.extend(e.path for e in accesslog.read(
        path, HOSTS, tail=1, follow=True, stopped=stop.is_set)))
    reader.start()
    with open(path, "a") as f:
        f.write(line("/4")[:20])  # Caddy is mid-line
        f.flush()
        time.sleep(0.3)
        f.write(line("/4")[20:])
    time.sleep(0.4)
    path.rename(tmp_path / "access-1.log")  # rolled: a new file in its place
    path.write_text(line("/5"))
    deadline = time.monotonic() + 5
    while "/5" not in got and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    reader.join(5)
    assert got == ["/3", "/4", "/5"] and not reader.is_alive()


def test_a_missing_log_is_empty():
    assert list(accesslog.read(__import__("pathlib").Path("/nonexistent/access.log"), HOSTS)) == []


def test_since_takes_durations_and_unix_seconds_and_refuses_the_rest():
    now = 1_800_000_000.0
    assert since_time("90s", now) == now - 90
    assert since_time("1h30m", now) == now - 5400
    assert since_time("2d", now) == now - 2 * 86400
    assert since_time("1799999000.5", now) == 1799999000.5
    assert since_time(None, now) is None
    for bad in ("yesterday", "1y", "-5m", "0x10", "400d", "1h\n", "1799999000e3", "0"):
        with pytest.raises(BadRequest, match="give a duration like 30s"):
            since_time(bad, now)
