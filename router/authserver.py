"""Serving the auth service: a threaded WSGI server on a unix socket or loopback port.

In-process on purpose: the token lookup is a Python callable of the control plane (backed
by etcd), so the auth service runs as a thread of whatever process owns that callable.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from router.auth import AuthService
from router.tokencheck import Lookup, TokenChecker


class _QuietHandler(WSGIRequestHandler):
    """No per-request log lines: the proxy logs requests, and we never want a URL here."""

    def log_request(self, *args, **kwargs) -> None:
        pass


class AuthServer:
    """The auth service listening on `listen`: "unix//path" or "127.0.0.1:port" (the same
    notation Caddy's `dial` uses, so NodeSettings.auth can take the same string)."""

    def __init__(self, listen: str, lookup: Lookup, key: bytes):
        self.listen = listen
        self.service = AuthService(TokenChecker(lookup), key)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.listen.startswith("unix//"):
            path = Path(self.listen[len("unix/"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                os.unlink(path)
            self._server = make_server(f"unix://{path}", 0, self.service, threaded=True,
                                       request_handler=_QuietHandler)
        else:
            host, _, port = self.listen.rpartition(":")
            self._server = make_server(host, int(port), self.service, threaded=True,
                                       request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="vcapp-auth", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
