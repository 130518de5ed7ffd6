"""The endpoint Caddy asks before it gets a certificate on demand (router/edge_config.py
ask_url): GET /?domain=NAME answers 200 when the cluster serves NAME, 403 otherwise, so a
TLS handshake with any other SNI never reaches the CA (no certificate for names the cluster
does not serve, no ACME rate limit spent on scanners).

It listens on loopback only, on a port the kernel picks, and answers from the routes table
the edge daemon polls from the cluster's API (a name added there is allowed within a poll).
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

MAX_NAME = 253  # a DNS name's longest spelling


class PermissionServer:
    def __init__(self, allowed: Callable[[str], bool]):
        self.allowed = allowed
        self.asked: dict[str, float] = {}  # name -> first allowed ask (a visit wanting a certificate)
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                names = parse_qs(urlsplit(self.path).query).get("domain") or [""]
                name = names[0].strip().lower().rstrip(".")
                ok = 0 < len(name) <= MAX_NAME and server.allowed(name)
                if ok:
                    with server.lock:
                        server.asked.setdefault(name, time.time())
                self.send_response(200 if ok else 403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:  # Caddy logs its own asks
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def first_asks(self) -> dict[str, float]:
        with self.lock:
            return dict(self.asked)

    def start(self) -> None:
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="edge-permission", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
