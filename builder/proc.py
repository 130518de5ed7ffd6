"""Running the builder's subprocesses: where they run, their output streamed line by line,
and a hard time limit that kills the whole process group.

Where a command runs is a `Spawn`: a function like `subprocess.Popen(argv, **kw)` that
starts argv on the machine that builds, in a new session (its own process group), with
that machine's environment. `local()` is this machine; tests pass a function that enters a
simulated machine (its network namespace and container storage).
"""

from __future__ import annotations

import os
import queue
import shlex
import signal
import subprocess
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Protocol

from builder.errors import BuildError

# After SIGTERM, how long a process group gets to exit before SIGKILL: buildah removes its
# working container on SIGTERM, which takes a second or two.
TERM_GRACE = 10.0
TAIL_LINES = 40  # lines of log an error carries: enough to see the failing step and its output

LineSink = Callable[[str], None]


class Spawn(Protocol):
    def __call__(self, argv: list[str], **kw) -> subprocess.Popen: ...


def local(env: Mapping[str, str] | None = None) -> Spawn:
    """Spawn on this machine, in this network namespace, with `env` (default: ours)."""
    def spawn(argv: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(argv, env=dict(env) if env is not None else None, start_new_session=True, **kw)
    return spawn


def redact(url: str) -> str:
    """A URL fit for a log: its login, if any, as ***."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def write_env_file(path: Path, pairs: list[tuple[str, str]]) -> Path:
    """`pairs` as a shell file of NAME='value' lines, mode 0600, for `with_env_file`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{name}={shlex.quote(value)}\n" for name, value in pairs)
    return path


def with_env_file(argv: list[str], path: Path | None) -> list[str]:
    """`argv` run with the variables of `path` (write_env_file) added to its environment, on
    whatever machine a Spawn runs it: values (a proxy's login) never appear on a command line,
    which every process of the machine can read."""
    if path is None:
        return argv
    return ["sh", "-c", 'set -a && . "$0" && exec "$@"', str(path), *argv]


@dataclass
class Outcome:
    returncode: int | None  # None: killed at the time limit
    tail: list[str]
    timed_out: bool
    seconds: float


def _pump(stream, lines: queue.Queue) -> None:
    for raw in iter(stream.readline, b""):
        lines.put(raw.decode(errors="replace").rstrip("\r\n"))
    lines.put(None)


def kill_group(proc: subprocess.Popen, grace: float = TERM_GRACE) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after `grace`."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def stream(spawn: Spawn, argv: list[str], on_line: LineSink | None, timeout: float) -> Outcome:
    """Run argv, hand each output line (stdout and stderr merged) to on_line as it comes,
    and kill it at `timeout` seconds. Lines are delivered on the calling thread."""
    start = time.monotonic()
    proc = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    deadline, timed_out = start + timeout, False
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                timed_out = True
                kill_group(proc)
                break
            if line is None:
                break
            tail.append(line)
            if on_line:
                on_line(line)  # may raise (the pusher went away): then the finally kills the build
        returncode = None if timed_out else proc.wait()
    finally:
        if proc.poll() is None:
            kill_group(proc)
        proc.stdout.close()
    return Outcome(returncode, list(tail), timed_out, time.monotonic() - start)


def check(spawn: Spawn, argv: list[str], timeout: float, on_line: LineSink | None = None) -> list[str]:
    """Run argv to completion; return its output lines or raise BuildError with its tail."""
    captured: list[str] = []

    def sink(line: str) -> None:
        captured.append(line)
        if on_line:
            on_line(line)

    outcome = stream(spawn, argv, sink, timeout)
    if outcome.timed_out:
        raise BuildError(f"`{' '.join(argv[:3])} ...` took over {timeout:.0f} s and was killed", outcome.tail)
    if outcome.returncode != 0:
        raise BuildError(f"`{' '.join(argv[:3])} ...` exited {outcome.returncode}", outcome.tail)
    return captured
