"""`vcapp run APP` on a terminal: the person's keystrokes go to a command on a terminal in the
app's release, its screen comes back (vcapp/terminal.py; the server side is vcapp/api/console.py).

One HTTP request carries both directions at once, so it is spoken on the connection itself
(http.client), not through requests, which sends a body whole before reading the answer.
Standard input in raw mode when it is a terminal; when it is not (a script pipes commands in),
its end does not end the session: the command's exit does.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import ssl
import sys
import termios
import threading
import tty
from typing import Iterator
from urllib.parse import urlsplit

from vcapp import terminal
from vcapp.cli.client import Client, ClientError

CONNECT_TIMEOUT_S = 10.0
READ_BYTES = 1024
STOPPED_STATUS = 124  # what timeout(1) exits with; the session says -1 for a command stopped at its limit


class Connection:
    """The session's request, its body sent a frame at a time from any thread."""

    def __init__(self, client: Client, path: str):
        url = urlsplit(client.login.url)
        if url.scheme == "https":
            context = ssl.create_default_context(cafile=os.environ.get("REQUESTS_CA_BUNDLE") or None)
            self.conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                url.hostname, url.port or 443, timeout=CONNECT_TIMEOUT_S, context=context)
        else:
            self.conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=CONNECT_TIMEOUT_S)
        self.lock = threading.Lock()
        try:
            terminal.open_session(self.conn, url.path.rstrip("/") + path, client.login.token)
        except OSError as e:
            raise ClientError(f"cannot reach {client.login.url}: {e}") from None

    def send(self, kind: bytes, payload: bytes) -> None:
        with self.lock:
            self.conn.send(terminal.chunk(terminal.frame(kind, payload)))


def session(client: Client, app: str, command: str) -> int:
    """Run `command` (a shell when empty) in APP on this terminal; its exit status."""
    conn = Connection(client, f"/v1/apps/{app}/console")
    rows, cols = _size()
    conn.send(terminal.COMMAND, json.dumps({"command": command, "rows": rows, "cols": cols}).encode())
    answer = conn.conn.getresponse()
    if answer.status != 200:
        try:
            why = json.loads(answer.read()).get("error")
        except ValueError:
            why = None
        raise ClientError(why or f"{client.login.url} answered {answer.status}", answer.status)
    with _raw_input():
        threading.Thread(target=_keys, args=(conn,), name="vcapp-keys", daemon=True).start()
        if sys.stdin.isatty():
            signal.signal(signal.SIGWINCH, lambda *_: _resized(conn))
        return _screen(answer)


def _screen(answer: http.client.HTTPResponse) -> int:
    frames = terminal.Frames()
    while data := answer.read1(65536):
        for kind, payload in frames.feed(data):
            if kind == terminal.OUTPUT:
                os.write(sys.stdout.fileno(), payload)
            elif kind == terminal.EXIT:
                code = int(json.loads(payload)["code"])
                return STOPPED_STATUS if code < 0 else code
            elif kind == terminal.ERROR:
                raise ClientError(payload.decode(errors="replace"))
    raise ClientError("the cluster ended the session without the command's exit status")


def _keys(conn: Connection) -> None:
    """Standard input to the session until it ends (see the module docstring)."""
    try:
        while data := os.read(sys.stdin.fileno(), READ_BYTES):
            conn.send(terminal.INPUT, data)
    except OSError:
        pass


def _resized(conn: Connection) -> None:
    rows, cols = _size()
    with contextlib.suppress(OSError):
        conn.send(terminal.WINDOW, json.dumps({"rows": rows, "cols": cols}).encode())


def _size() -> tuple[int, int]:
    size = shutil.get_terminal_size()
    return size.lines, size.columns


@contextlib.contextmanager
def _raw_input() -> Iterator[None]:
    """Keystrokes as typed (Ctrl-C goes to the command, not to this process) while a terminal
    is standard input; its mode back afterwards."""
    if not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
