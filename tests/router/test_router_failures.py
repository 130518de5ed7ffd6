"""A node router's own 502 for the admin API, on a real Caddy proxying as the edge does
(router/edge_config.py, caddyjson.ROUTER_FAILED).

A node router whose config is being replaced ends the retries it had under the old one and
answers 502 (router/cutoff.py). The admin API never answers 502 to a GET, so the edge sends
an idempotent request answered so to a router again: `git push` and the CLI's reads get their
answer. A POST answered 502 is passed on as it is: it may have reached the API.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from router import caddyjson, edge_config
from router.caddy import CaddyProcess
from router.routes import EdgeRoutes, api_host

from .standins import free_port


D = "apps.example.com"


class Router(BaseHTTPRequestHandler):
    """A node router in front of the API: its first answer to each path is its own bare 502
    (its retries ended by a load); it answers 200 after that, and its health check always;
    /drop is never answered."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == caddyjson.NODE_HEALTH_PATH:
            return self._send(200, b"ok\n")
        if self.path == "/drop":  # a reload's old server: the connection closed unanswered
            self.close_connection = True
            return
        with self.lock:
            first = (self.command, self.path) not in self.seen
            self.seen.append((self.command, self.path))
        self._send(502 if first else 200, b"" if first else b'{"ok": true}')

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def edge(tmp_path):
    Router.seen = []
    router = ThreadingHTTPServer(("127.0.0.1", 0), Router)
    threading.Thread(target=router.serve_forever, daemon=True).start()
    caddy = CaddyProcess(tmp_path / "caddy")
    caddy.start()
    listen = free_port()
    routes = EdgeRoutes(D, nodes=(f"127.0.0.1:{router.server_address[1]}",))
    settings = edge_config.EdgeSettings(str(caddy.admin_socket), str(caddy.storage_dir))
    (api_route,) = [r for r in edge_config._routes(routes, settings) if r.get("match") == [{"host": [api_host(D)]}]]
    config = caddyjson.base_document(str(caddy.admin_socket), str(caddy.storage_dir))
    config["apps"]["http"] = {"servers": {"s": {"listen": [f"127.0.0.1:{listen}"], "routes": [api_route],
                                                "automatic_https": {"disable": True}}}}
    caddy.admin.load(config)
    yield listen, caddy
    caddy.stop()
    router.shutdown()


def ask(port: int, method: str, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=b"{}" if method == "POST" else None, headers={"Host": api_host(D)})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status


def test_a_routers_502_to_an_idempotent_api_request_is_sent_again_and_a_post_is_not(edge):
    port, caddy = edge
    assert ask(port, "GET", "/git/hello.git/info/refs?service=git-receive-pack") == 200
    assert ask(port, "HEAD", "/v1/apps") == 200
    assert ask(port, "POST", "/git/hello.git/git-receive-pack") == 502  # may have reached the API
    assert Router.seen == [("GET", "/git/hello.git/info/refs?service=git-receive-pack")] * 2 + \
        [("HEAD", "/v1/apps")] * 2 + [("POST", "/git/hello.git/git-receive-pack")]
    # A POST whose connection closed unanswered is not sent again either, and deciding so is
    # no error of the retry rules (the 502 rule does not apply to a failed round trip).
    assert ask(port, "POST", "/drop") == 502
    assert "error matching request for retry" not in caddy.log.read_text()
