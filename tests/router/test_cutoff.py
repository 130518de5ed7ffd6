"""A request in flight to a machine that dies, on a real Caddy proxying as the edge and the node
routers do (router/caddyjson.py): the upstream has the request and never answers; once the
connections to it are cut (router/cutoff.py, as the routers do when the machine leaves the
routes) a GET is answered by the other upstream at once, and a POST is not sent twice. On
the edge the cut may come after the app's handler stopped trying (its try duration counts
from the request's arrival); its error route then sends a GET to any live node router."""

from __future__ import annotations

import copy
import http.client
import json
import socket
import threading
import time

import pytest

from router import caddyjson, cutoff, edge_config
from router.caddy import CaddyProcess
from router.routes import EdgeRoutes
from tests.router.standins import Orders, free_port, serve

ANSWER_WITHIN_S = 3.0  # after the cut: the retry is one more local round trip


class Silent:
    """A server that takes requests and never answers, like a machine that died with them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.received = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                self.received.set()
        except OSError:
            pass

    def die(self) -> None:
        """No new connection gets in any more (a dead machine's port refuses or drops them)."""
        self.sock.shutdown(socket.SHUT_RDWR)  # stops listening at once, even with accept() blocked
        self.sock.close()

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


class Answering(Orders):
    seen: list[str] = []


def proxy_to(tmp_path, edge: bool, reload: list | None = None):
    """Caddy on a free port before a silent upstream and a live one; `edge`: the silent one is
    the app's handler's only upstream, tried for 1 s, and the live one is behind the edge's
    error route (any node router), else both are the handler's, the silent one first."""
    silent = Silent()
    live = serve(Answering)
    Answering.seen = []
    caddy = CaddyProcess(tmp_path / "caddy")
    caddy.start()
    listen, doomed, alive = free_port(), f"127.0.0.1:{silent.port}", f"127.0.0.1:{live.server_address[1]}"
    server: dict = {"listen": [f"127.0.0.1:{listen}"]}
    if edge:
        server["routes"] = [{"handle": [caddyjson.reverse_proxy([doomed], None, try_duration="1s")]}]
        server["errors"] = {"routes": edge_config.error_routes(EdgeRoutes.build("apps.test", ["shop"], [alive]))}
    else:
        proxy = caddyjson.reverse_proxy([doomed, alive], None)
        proxy["load_balancing"]["selection_policy"] = {"policy": "first"}  # the doomed upstream first
        server["routes"] = [{"handle": [proxy]}]
    config = caddyjson.base_document(str(caddy.admin_socket), str(caddy.storage_dir))
    config["apps"]["http"] = {"servers": {"s": server}}
    caddy.admin.load(config)
    if reload is not None:  # the same server without the doomed upstream, as after its death
        without = copy.deepcopy(config)
        without["apps"]["http"]["servers"]["s"]["routes"] = [{"handle": [caddyjson.reverse_proxy([alive], None)]}]
        reload.append(lambda: caddy.admin.load(without))
    return listen, silent, lambda: (caddy.stop(), live.shutdown(), silent.close())


@pytest.fixture
def proxied(tmp_path):
    listen, silent, stop = proxy_to(tmp_path, edge=False)
    yield listen, silent
    stop()


@pytest.fixture
def edge(tmp_path):
    listen, silent, stop = proxy_to(tmp_path, edge=True)
    yield listen, silent
    stop()


def send(port: int, method: str, out: dict) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, "/", body=b"order 1" if method == "POST" else None)
    resp = conn.getresponse()
    out.update(status=resp.status, body=resp.read().decode(), at=time.monotonic())


def cut_while_in_flight(port: int, silent: Silent, method: str, after: float = 0.5) -> tuple[dict, float]:
    out: dict = {}
    client = threading.Thread(target=send, args=(port, method, out))
    client.start()
    assert silent.received.wait(10), "the request never reached the silent upstream"
    time.sleep(after)  # in flight: sent, no answer
    assert not out, out
    cut = time.monotonic()
    silent.die()
    assert cutoff.abort("127.0.0.1", (silent.port,))
    client.join(ANSWER_WITHIN_S + 30)
    return out, cut


def test_a_get_in_flight_to_a_dead_upstream_is_answered_by_another_once_cut(proxied):
    port, silent = proxied
    out, cut = cut_while_in_flight(port, silent, "GET")
    assert out["status"] == 200 and out["body"] == "from the live instance\n", out
    assert out["at"] - cut < ANSWER_WITHIN_S, f"answered {out['at'] - cut:.1f}s after the cut"
    assert Answering.seen == ["GET"]


def test_a_post_in_flight_is_not_sent_twice(proxied):
    port, silent = proxied
    out, _ = cut_while_in_flight(port, silent, "POST")
    assert out["status"] == 502, out  # the app may have acted on it: the client decides
    assert Answering.seen == []


def test_on_the_edge_a_get_cut_after_the_handler_gave_up_goes_to_any_router(edge):
    port, silent = edge
    out, cut = cut_while_in_flight(port, silent, "GET", after=2.0)  # the handler tried for 1 s only
    assert out["status"] == 200 and out["body"] == "from the live instance\n", out
    assert out["at"] - cut < ANSWER_WITHIN_S, f"answered {out['at'] - cut:.1f}s after the cut"


def test_on_the_edge_a_post_cut_in_flight_is_not_sent_again(edge):
    port, silent = edge
    out, _ = cut_while_in_flight(port, silent, "POST", after=2.0)
    assert out["status"] == 502, out
    assert "POST" not in Answering.seen


def test_a_get_in_flight_to_a_machine_that_leaves_the_routes_is_answered_across_the_reload(tmp_path):
    """The node routers load routes without a dead machine and cut its connections: a GET in
    flight to it is answered by the live instance (Caddy drops the retries of a replaced config,
    so cutting after the load answered 502)."""
    reload: list = []
    port, silent, stop = proxy_to(tmp_path, edge=False, reload=reload)
    try:
        out: dict = {}
        client = threading.Thread(target=send, args=(port, "GET", out))
        client.start()
        assert silent.received.wait(10), "the request never reached the silent upstream"
        time.sleep(0.5)
        silent.die()
        cutoff.around_load(["127.0.0.1"], (silent.port,), reload[0])
        client.join(ANSWER_WITHIN_S + 30)
        assert out["status"] == 200 and out["body"] == "from the live instance\n", out
    finally:
        stop()


def test_the_cut_selects_one_machine_and_its_ports_only():
    argv = cutoff.abort_argv("100.96.0.11", (7080, 7081))
    assert argv == ["ss", "-K", "-t", "dst", "100.96.0.11", "(", "dport", "=", ":7080", "or", "dport", "=",
                    ":7081", ")"]
    with pytest.raises(ValueError):
        cutoff.abort_argv("100.96.0.11; reboot", (7080,))
    with pytest.raises(ValueError):
        cutoff.abort_argv("100.96.0.11", ())
    assert cutoff.only_in(["10.1.0.11:7080", "10.1.0.12:7080"], ["10.1.0.12:7080"]) == ["10.1.0.11"]
    assert cutoff.only_in(("10.1.0.11", "10.1.0.12"), ("10.1.0.11", "10.1.0.12", "10.1.0.13")) == []
    assert json.dumps(caddyjson.reverse_proxy(["a:1"], None)["load_balancing"]["retry_match"]) == \
        '[{"method": ["GET", "HEAD", "OPTIONS"]}]'
