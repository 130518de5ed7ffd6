"""`vcapp logs -f` over several instances (vcapp/api/logs.py `_merged`): every line of every
stream arrives, tagged with its instance, and a reader that goes away stops the streams."""

import threading
import time

from vcapp.api.logs import _merged


def lines(n: int, pause: float, closed: list | None = None):
    try:
        for i in range(n):
            time.sleep(pause)
            yield f"line {i}"
    finally:
        if closed is not None:
            closed.append(True)


def test_every_line_of_every_instance_arrives_tagged():
    got = list(_merged([("0", lines(3, 0.01)), ("worker-0", lines(2, 0.015))]))
    assert sorted(got) == [("0", "line 0"), ("0", "line 1"), ("0", "line 2"),
                           ("worker-0", "line 0"), ("worker-0", "line 1")]


def test_a_stream_that_fails_is_said_and_the_others_go_on():
    def broken():
        yield "first"
        raise OSError("machine home-2 went away")
    got = list(_merged([("0", broken()), ("1", lines(2, 0.01))]))
    assert ("0", "(vcapp: the log of 0 ended: machine home-2 went away)") in got
    assert ("1", "line 1") in got


def test_a_reader_that_leaves_stops_and_closes_the_streams():
    closed: list = []
    merged = _merged([("0", lines(10**6, 0.0, closed))])
    next(merged)
    merged.close()
    deadline = time.monotonic() + 5
    while (any(t.name.startswith("logs-") for t in threading.enumerate()) or not closed) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert closed and not any(t.name.startswith("logs-") for t in threading.enumerate())
