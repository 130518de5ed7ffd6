"""The frames of a terminal session (vcapp/terminal.py) and the pure parts of both ends."""

from __future__ import annotations

import io
import json

import pytest

from vcapp import terminal
from vcapp.deploy import console
from vcapp.deploy.release_phase import command_args


def test_frames_survive_any_split_of_the_stream():
    stream = (terminal.json_frame(terminal.COMMAND, {"command": "sh", "rows": 24, "cols": 80})
              + terminal.frame(terminal.INPUT, b"ls\r") + terminal.frame(terminal.INPUT, b"")
              + terminal.frame(terminal.OUTPUT, bytes(range(256))))
    whole = terminal.Frames().feed(stream)
    assert [k for k, _ in whole] == [terminal.COMMAND, terminal.INPUT, terminal.INPUT, terminal.OUTPUT]
    for cut in range(len(stream)):  # proxies re-chunk: every split point gives the same frames
        frames = terminal.Frames()
        assert frames.feed(stream[:cut]) + frames.feed(stream[cut:]) == whole
    assert list(terminal.read_frames(io.BytesIO(stream))) == whole


@pytest.mark.parametrize("garbage", [b"POST / HTTP/1.1\r\n", b"o\xff\xff\xff\xff", b"z\x00\x00\x00\x01x"])
def test_bytes_that_are_not_frames_are_refused(garbage):
    with pytest.raises(terminal.FrameError):
        terminal.Frames().feed(garbage)


@pytest.mark.parametrize("doc, size", [
    ({"rows": 50, "cols": 132}, (50, 132)),
    ({}, console.DEFAULT_SIZE),
    ({"rows": "x", "cols": 80}, console.DEFAULT_SIZE),
    ({"rows": 10**9, "cols": 80}, console.DEFAULT_SIZE),
    ({"rows": -1, "cols": 80}, console.DEFAULT_SIZE),
])
def test_a_window_size_is_taken_only_within_bounds(doc, size):
    assert console.window(json.loads(json.dumps(doc))) == size


def test_a_terminal_run_asks_podman_for_one():
    plain = command_args("blog", 3, "img", "ls", "/e", {})
    on_tty = command_args("blog", 3, "img", "ls", "/e", {}, tty=True)
    assert "-t" not in plain and on_tty[:5] == ["podman", "run", "--rm", "-i", "-t"]
    assert on_tty[-4:] == plain[-4:] == ["img", "sh", "-c", "ls"]


def test_a_session_output_carries_the_screen_and_the_exit_status():
    import threading

    done = threading.Event()

    def person():
        yield terminal.INPUT, b"Alice\r"
        done.wait(10)

    session = console.Session(["sh", "-c", "tty; read name; echo got:$name; exit 5"], "vc-run-unit", (30, 100), 10)
    threading.Thread(target=session.feed, args=(person(),), daemon=True).start()
    seen = terminal.Frames().feed(b"".join(session.output()))
    done.set()
    screen = b"".join(p for k, p in seen if k == terminal.OUTPUT)
    assert b"/dev/pts/" in screen and b"got:Alice" in screen, screen
    assert seen[-1] == (terminal.EXIT, b'{"code": 5}')
