"""A real node router (router/node.py) on loopback, routed by its DNS answers: an app's
instance replaced again and again under a steady stream of GETs and POSTs reloads nothing and
loses nothing; an app with no instance answers its "not running" page, and serves again once
an instance is back; the access log names the instance a request went to."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from http.server import ThreadingHTTPServer

from router import accesslog
from router.node import NodeRouter
from router.routes import AppRoute, NodeRoutes
from tests.router.standins import Orders, free_port, retire, serve

D = "apps.example.com"
HOST = f"blog.{D}"
MOVES = 8


class _App(Orders):
    orders: Counter = Counter()
    seen: list[str] = []

    def answer(self) -> bytes:
        return f"{self.server.server_port}\n".encode()


def instance() -> ThreadingHTTPServer:
    return serve(_App)


def table(app: ThreadingHTTPServer | None, down: str | None = None) -> NodeRoutes:
    if app is None:
        return NodeRoutes.build(D, {"blog": AppRoute(down=down, down_detail="To start it: vcapp scale blog --count 1")})
    here = f"127.0.0.1:{app.server_port}"
    return NodeRoutes.build(D, {"blog": AppRoute((here,), local=(here,))})


def ask(port: int, method: str = "GET", body: bytes | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, "/", body=body, headers={"Host": HOST})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def client(port: int, n: int, stop: threading.Event, out: list) -> None:
    """GET and POST in turn on one kept-alive connection, as the edge sends."""
    conn, i = None, 0
    while not stop.is_set():
        method = "POST" if i % 2 else "GET"
        i += 1
        try:
            conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request(method, "/", body=f"{n}/{i}".encode() if method == "POST" else None,
                         headers={"Host": HOST})
            resp = conn.getresponse()
            resp.read()
            out.append((method, resp.status))
        except (OSError, http.client.HTTPException) as e:
            out.append((method, type(e).__name__))
            conn = None
        time.sleep(0.005)


def test_instances_replaced_under_load_reload_nothing_and_lose_nothing(tmp_path):
    _App.orders = Counter()
    port = free_port()
    router = NodeRouter(tmp_path / "router", f"127.0.0.1:{port}", lookup=lambda h: None, key=b"k" * 32)
    apps = [instance()]
    router.start()
    try:
        assert router.update(table(apps[0]))  # the first config
        out: list = []
        stop = threading.Event()
        clients = [threading.Thread(target=client, args=(port, n, stop, out)) for n in range(3)]
        for c in clients:
            c.start()
        loads = 0
        for _ in range(MOVES):
            time.sleep(0.2)
            apps.append(instance())
            loads += router.update(table(apps[-1]))
            while not router.settled():  # what the route switch waits for before the old one stops
                time.sleep(0.02)
            retire(apps.pop(0))
        time.sleep(0.2)
        stop.set()
        for c in clients:
            c.join()
        failed = [o for o in out if o[1] != 200]
        assert loads == 0, "a move reloaded the router"
        assert not failed and len(out) > 100, (len(out), failed[:5])
        assert max(_App.orders.values()) == 1 and sum(_App.orders.values()) == sum(1 for o in out if o[0] == "POST")
        assert ask(port) == (200, f"{apps[-1].server_port}\n")
        lines = [e for line in router.access_log.read_text().splitlines() if (e := accesslog.parse(line))]
        assert lines[-1].upstream == f"127.0.0.1:{apps[-1].server_port}" and lines[-1].local
    finally:
        router.stop()
        for app in apps:
            retire(app)


def test_an_app_without_instances_says_why_and_serves_again_once_one_is_back(tmp_path):
    port = free_port()
    router = NodeRouter(tmp_path / "router", f"127.0.0.1:{port}", lookup=lambda h: None, key=b"k" * 32)
    app = instance()
    router.start()
    try:
        router.update(table(None, "stopped"))
        status, page = ask(port)
        assert status == 503 and "<title>blog is stopped</title>" in page and "vcapp scale blog" in page
        assert ask(port, "POST", b"x")[0] == 503  # the page, whatever the method
        assert not router.update(table(app))  # back: a page and an answer, no new config
        assert ask(port) == (200, f"{app.server_port}\n")
        router.update(table(None, "crashed"))
        assert "Its instances crashed." in ask(port)[1]
    finally:
        router.stop()
        retire(app)
