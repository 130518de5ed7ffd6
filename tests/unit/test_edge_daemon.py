"""The edge daemon's choices (vcapp/edge/daemon.py), without Caddy or a cluster: whom it asks for
the routes table first, and whose connections it cuts when the table names them down."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from router import cutoff
from router.routes import EdgeRoutes
from vcapp.edge import daemon as daemon_module
from vcapp.edge.daemon import EdgeDaemon, EdgeOptions


def daemon() -> EdgeDaemon:
    opts = EdgeOptions(domain="apps.test", token="t", workdir=Path("/nonexistent"), nodes=["10.1.0.11"])
    return EdgeDaemon(opts, edge=SimpleNamespace(cert_log=Path("/nonexistent/certificates.log")))


def test_the_router_that_answered_is_asked_first_and_the_silent_or_down_ones_last():
    d = daemon()
    d.last_table = {"nodes": ["10.1.0.11:7080", "10.1.0.12:7080", "10.1.0.13:7080"], "down": ["10.1.0.12:7080"]}
    assert d.known_routers() == ["10.1.0.11:7080", "10.1.0.13:7080", "10.1.0.12:7080"]
    d.answered, d.silent = "10.1.0.13:7080", {"10.1.0.11:7080"}
    assert d.known_routers() == ["10.1.0.13:7080", "10.1.0.11:7080", "10.1.0.12:7080"]


def test_only_routers_newly_down_are_cut(monkeypatch):
    cut = []
    monkeypatch.setattr(cutoff, "abort", lambda addr, ports: cut.append((addr, ports)) or True)
    d = daemon()
    d.cut_the_fallen(["10.1.0.12:7080"], ["10.1.0.12:7080", "10.1.0.13:7080"])
    assert cut == [("10.1.0.13", (7080,))]
    d.cut_the_fallen(["10.1.0.13:7080"], [])  # back up: nothing to cut
    assert len(cut) == 1


def test_a_router_falls_when_the_cluster_names_it_down_or_the_edge_stops_reaching_it():
    d = daemon()
    d.last_table = {"nodes": ["10.1.0.11:7080", "10.1.0.12:7080", "10.1.0.13:7080"], "down": ["10.1.0.13:7080"]}
    d.tracker.peers(set(d.last_table["nodes"]), now=0.0)
    for t in (0.5, 1.0):
        d.tracker.observe("10.1.0.11:7080", True, t)
        d.tracker.observe("10.1.0.12:7080", False, t)
    assert d.fallen() == ["10.1.0.13:7080"]  # one miss after 1 s of silence: not yet
    d.tracker.observe("10.1.0.12:7080", False, 1.6)
    assert d.fallen() == ["10.1.0.12:7080", "10.1.0.13:7080"]
    d.tracker.observe("10.1.0.12:7080", True, 2.0)  # it answers again
    assert d.fallen() == ["10.1.0.13:7080"]


def test_a_restarted_edge_serves_the_apps_of_its_last_table_before_the_cluster_answers(tmp_path):
    opts = EdgeOptions(domain="apps.test", token="t", workdir=tmp_path, nodes=["10.1.0.11"])
    first = EdgeDaemon(opts, edge=SimpleNamespace(cert_log=tmp_path / "certificates.log"))
    table = {"domain": "apps.test", "apps": ["web", "shop"], "nodes": ["10.1.0.11:7080", "10.1.0.12:7080"],
             "domains": {"shop": ["shop.example.com"]}}
    first.fetch_table = lambda: table
    assert first.routes().apps == ("shop", "web")
    again = EdgeDaemon(opts, edge=SimpleNamespace(cert_log=tmp_path / "certificates.log"))
    again.fetch_table = lambda: None  # booting: the mesh is not up yet
    routes = again.routes()
    assert routes.apps == ("shop", "web") and routes.nodes == ("10.1.0.11:7080", "10.1.0.12:7080")
    assert "shop.example.com" in routes.hostnames() and again.served  # and may be given certificates
    (tmp_path / "last-table.json").write_text("{not json")
    assert EdgeDaemon(opts, edge=SimpleNamespace(cert_log=tmp_path / "c.log")).last_table is None


def listening_after(delay: float) -> tuple[str, socket.socket]:
    """A loopback port that refuses connections for `delay` s, then takes them (a router whose
    machine's mesh comes up late); the caller keeps the socket."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def listen() -> None:
        time.sleep(delay)
        listener.bind(("127.0.0.1", port))
        listener.listen()

    threading.Thread(target=listen, daemon=True).start()
    return f"127.0.0.1:{port}", listener


def test_a_starting_edge_serves_once_a_router_takes_a_connection_and_asks_that_one_first(tmp_path):
    (late, _late), (never, _never) = listening_after(1.0), listening_after(3600)
    updates: list[tuple[float, EdgeRoutes]] = []
    edge = SimpleNamespace(cert_log=tmp_path / "c.log", start=lambda: None,
                           update=lambda routes: updates.append((time.monotonic(), routes)))
    d = EdgeDaemon(EdgeOptions(domain="apps.test", token="t", workdir=tmp_path, nodes=[never, late], dev=True),
                   edge=edge)
    asked: list[list[str]] = []
    d.fetch_table = lambda: asked.append(d.known_routers()) or {"domain": "apps.test", "apps": ["web"],
                                                                "nodes": [never, late]}
    d.edge.root_ca_pem = lambda: "pem"
    began = time.monotonic()
    d.start()
    (at, routes), = updates
    assert 0.9 < at - began < 2.5, f"Caddy got its config {at - began:.1f}s after the start"
    assert asked == [[late, never]] and routes.apps == ("web",)


def test_a_starting_edge_that_reaches_no_router_serves_its_last_table(tmp_path, monkeypatch):
    monkeypatch.setattr(daemon_module, "FIRST_ROUTER_WAIT_S", 1.0)
    never, _never = listening_after(3600)
    (tmp_path / "last-table.json").write_text(json.dumps({"domain": "apps.test", "apps": ["shop"], "nodes": [never]}))
    updates: list[EdgeRoutes] = []
    d = EdgeDaemon(EdgeOptions(domain="apps.test", token="t", workdir=tmp_path, dev=True),
                   edge=SimpleNamespace(cert_log=tmp_path / "c.log", start=lambda: None, update=updates.append,
                                        root_ca_pem=lambda: "pem"))
    d.fetch_table = lambda: pytest.fail("asked with no router reachable")
    began = time.monotonic()
    d.start()
    assert time.monotonic() - began < 2.0
    assert [r.apps for r in updates] == [("shop",)]
