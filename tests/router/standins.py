"""Stand-ins for an app's instances in router tests on loopback: a server that answers 200 to
every GET and POST and remembers the POST bodies it got (to find one applied twice)."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Orders(BaseHTTPRequestHandler):
    """Answers `body` (set per subclass or instance's server) to GET and POST; counts each
    POST body in `orders` and each method in `seen`."""

    protocol_version = "HTTP/1.1"
    orders: Counter = Counter()
    seen: list[str] = []
    lock = threading.Lock()

    def answer(self) -> bytes:
        return b"from the live instance\n"

    def _answer(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            type(self).seen.append(self.command)
            if self.command == "POST":
                type(self).orders[data] += 1
        body = self.answer()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


def serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """`handler` on a free loopback port, served from a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def retire(server: ThreadingHTTPServer) -> None:
    """Stop taking connections, as a retired instance does; the requests it has finish."""
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
