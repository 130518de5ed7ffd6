"""How long the edge keeps a node router out after a request to it failed, on a real Caddy
proxying as the edge does to the routers running an app (router/caddyjson.py).

A node router reloads its config at every placement change in the cluster, and a reload closes
its idle keep-alive connections: a POST the edge sends on one at that moment is lost (Go's
server closes it unanswered; the edge answers 502 and must not send it again). That router is
alive. The next requests for its apps must not wait for it, or fail, because of that one loss;
a router that keeps failing (a dead machine's, before the cluster says so) still rests.
"""

from __future__ import annotations

import http.client
import threading
import time
from http.server import ThreadingHTTPServer

import pytest

from router import caddyjson
from router.caddy import CaddyProcess

from .test_cutoff import Answering, free_port

ANSWERED_WITHIN_S = 1.0  # a local round trip; a rested router makes the request wait 3 s


class Router(Answering):
    """A node router whose reload races the edge's POST to /race: the connection closes with
    the request unanswered, as the old server does when its shutdown begins."""

    protocol_version = "HTTP/1.1"  # keep-alive, as between the edge and the routers

    def _answer(self) -> None:
        if self.path != "/race":
            return super()._answer()
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.close_connection = True

    do_GET = do_POST = _answer


@pytest.fixture
def edge(tmp_path):
    router = ThreadingHTTPServer(("127.0.0.1", 0), Router)
    threading.Thread(target=router.serve_forever, daemon=True).start()
    caddy = CaddyProcess(tmp_path / "caddy")
    caddy.start()
    listen = free_port()
    proxy = caddyjson.reverse_proxy([f"127.0.0.1:{router.server_address[1]}"], None,
                                    try_duration=caddyjson.PREFERRED_TRY_DURATION)
    config = caddyjson.base_document(str(caddy.admin_socket), str(caddy.storage_dir))
    config["apps"]["http"] = {"servers": {"s": {"listen": [f"127.0.0.1:{listen}"], "routes": [{"handle": [proxy]}]}}}
    caddy.admin.load(config)
    yield listen
    caddy.stop()
    router.shutdown()


def ask(port: int, method: str, path: str) -> tuple[int, float]:
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=b"order 1" if method == "POST" else None)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, time.monotonic() - start


def test_one_post_lost_to_a_reload_does_not_take_the_router_out(edge):
    assert ask(edge, "GET", "/")[0] == 200
    assert ask(edge, "POST", "/race")[0] == 502  # lost, and not sent twice
    for method in ("GET", "POST", "GET"):
        status, took = ask(edge, method, "/after")
        assert status == 200, f"{method} after one lost POST: {status}"
        assert took < ANSWERED_WITHIN_S, f"{method} after one lost POST waited {took:.1f}s for the router"


def test_a_router_that_keeps_failing_rests(edge):
    for _ in range(caddyjson.MAX_FAILS):
        assert ask(edge, "POST", "/race")[0] == 502
    status, took = ask(edge, "GET", "/after")
    # no router to send it to for the whole try: the edge's error route then picks any live one
    assert status == 503 and took >= caddyjson.PREFERRED_TRY_S - 0.5, (status, took)
