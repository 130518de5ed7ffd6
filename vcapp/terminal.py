"""The wire format of an interactive session (`vcapp run APP` on a terminal): one HTTP request
whose body and answer both stream at once (chunked both ways; the routers run full duplex),
each a sequence of frames:

    +------+----------------+-------------------+
    | kind | length (4 B,   | payload           |
    | 1 B  | big-endian)    | (length bytes)    |
    +------+----------------+-------------------+

    client -> server   "c" {"command": "...", "rows": 24, "cols": 80}   first, once
                       "i" bytes typed                                   any number
                       "w" {"rows": 50, "cols": 132}                     the window changed
                       (the end of the body: the person's side is gone)
    server -> client   "o" terminal output                               any number
                       "x" {"code": 0}                                   last: the exit status
                       "e" a message for the person (it cannot run)      last

Proxies may split or join HTTP chunks, so frames carry their own length.
"""

from __future__ import annotations

import http.client
import json
import struct
from typing import BinaryIO, Iterator

COMMAND, INPUT, WINDOW = b"c", b"i", b"w"
OUTPUT, EXIT, ERROR = b"o", b"x", b"e"
KINDS = {COMMAND, INPUT, WINDOW, OUTPUT, EXIT, ERROR}
MIMETYPE = "application/vnd.vcapp.terminal"
MAX_PAYLOAD = 64 * 1024  # a frame is a read of a terminal or of a keyboard: a few KB at most
HEADER = struct.Struct(">cI")


class FrameError(ValueError):
    """Bytes that are not frames of this format."""


def frame(kind: bytes, payload: bytes) -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def json_frame(kind: bytes, doc: dict) -> bytes:
    return frame(kind, json.dumps(doc).encode())


def chunk(data: bytes) -> bytes:
    """`data` as one HTTP/1.1 chunk of a request body sent piece by piece."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def open_session(conn: http.client.HTTPConnection, path: str, token: str) -> None:
    """Start a session's request on `conn`: its headers sent, its body open for frames (send
    each as `chunk(frame(...))`), no read timeout (a session lasts as long as its command)."""
    conn.putrequest("POST", path)
    conn.putheader("Authorization", f"Bearer {token}")
    conn.putheader("Content-Type", MIMETYPE)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.sock.settimeout(None)


class Frames:
    """Frames out of bytes that arrive in pieces of any size."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.buffer += data
        found = []
        while len(self.buffer) >= HEADER.size:
            kind, length = HEADER.unpack_from(self.buffer)
            if kind not in KINDS or length > MAX_PAYLOAD:
                raise FrameError(f"not a session frame (kind {kind!r}, {length} bytes)")
            if len(self.buffer) < HEADER.size + length:
                break
            found.append((kind, self.buffer[HEADER.size:HEADER.size + length]))
            self.buffer = self.buffer[HEADER.size + length:]
        return found


def read_frames(stream: BinaryIO, piece: int = 1) -> Iterator[tuple[bytes, bytes]]:
    """Frames from a blocking stream until it ends. `piece`: bytes asked per read; 1 suits a
    request body that waits for each keystroke (a larger read waits to fill)."""
    frames = Frames()
    while True:
        data = stream.read(piece)
        if not data:
            return
        yield from frames.feed(data)
