"""A one-off command on a terminal (`vcapp run APP` from a person's terminal, like
`heroku run bash`): the command runs in the release image as release_phase.py runs it (env,
secrets, volumes, limits), with `podman run -it` on a pseudo-terminal of this machine, whose
two ends are pumped to and from the session's frames (vcapp/terminal.py).

The session ends when the command exits (its status is the last frame), when the person's
side goes away (the container is removed), or at the one-off time limit.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import termios
import threading
import time
from typing import Callable, Iterator

from vcapp import terminal
from vcapp.deploy import release_phase

READ_BYTES = 4096
DEFAULT_SIZE = (24, 80)
MAX_SIZE = 1000  # rows or columns: anything larger is not a terminal


def window(doc: dict) -> tuple[int, int]:
    """(rows, cols) from a frame's JSON, within bounds; the default where absent or absurd."""
    try:
        rows, cols = int(doc.get("rows") or 0), int(doc.get("cols") or 0)
    except (TypeError, ValueError):
        return DEFAULT_SIZE
    if not (0 < rows <= MAX_SIZE and 0 < cols <= MAX_SIZE):
        return DEFAULT_SIZE
    return rows, cols


def set_window(fd: int, size: tuple[int, int]) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))


class Session:
    """Runs one argv on a pseudo-terminal; `output()` yields the session's frames."""

    def __init__(self, argv: list[str], name: str, size: tuple[int, int], timeout: float):
        self.argv, self.name, self.timeout = argv, name, timeout
        self.master, slave = pty.openpty()
        set_window(self.master, size)
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     preexec_fn=_controlling_terminal)
        os.close(slave)
        self.started = time.monotonic()
        self.timer = threading.Timer(timeout, self.stop)
        self.timer.start()

    def feed(self, frames: Iterator[tuple[bytes, bytes]]) -> None:
        """Keystrokes and window changes to the terminal, until the person's side ends (then the
        command is stopped: nobody reads its output any more)."""
        try:
            for kind, payload in frames:
                if kind == terminal.INPUT:
                    os.write(self.master, payload)
                elif kind == terminal.WINDOW:
                    set_window(self.master, window(json.loads(payload or b"{}")))
        except (OSError, ValueError):
            pass  # the command ended (the terminal is closed) or the frames broke: stop below
        self.stop()

    def output(self) -> Iterator[bytes]:
        """Output frames as the command writes, then its exit status."""
        try:
            while True:
                try:
                    data = os.read(self.master, READ_BYTES)
                except OSError:  # EIO: every process holding the terminal has closed it
                    break
                if not data:
                    break
                yield terminal.frame(terminal.OUTPUT, data)
            code = self.proc.wait()
            stopped = time.monotonic() - self.started >= self.timeout
            yield terminal.json_frame(terminal.EXIT, {"code": release_phase.STOPPED if stopped else code})
        finally:
            self.stop()
            self.timer.cancel()
            os.close(self.master)

    def stop(self) -> None:
        if self.proc.poll() is None:
            subprocess.run(["podman", "rm", "-f", "-t", "0", self.name], capture_output=True)
            self.proc.kill()


def _controlling_terminal() -> None:
    """In the child: the pseudo-terminal is its controlling terminal, so podman sees a
    terminal and hands window changes on."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def runner(size: tuple[int, int], frames: Iterator[tuple[bytes, bytes]],
           out: Callable[[bytes], None]) -> release_phase.Terminal:
    """A release_phase terminal: runs the argv on a pseudo-terminal of this machine, feeds it
    the person's `frames`, and hands every output frame to `out`; answers the exit status."""

    def run(argv: list[str], job: release_phase.Job) -> int:
        session = Session(argv, job.name, size, job.timeout)
        threading.Thread(target=session.feed, args=(frames,), name=f"{job.name}-in", daemon=True).start()
        code = release_phase.STOPPED
        for data in session.output():
            if data[:1] == terminal.EXIT:  # the caller says it last, once the volumes are given back
                code = int(json.loads(data[terminal.HEADER.size:])["code"])
            else:
                out(data)
        return code

    return run
