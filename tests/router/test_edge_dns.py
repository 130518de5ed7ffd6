"""The edge's DNS answers: which node routers each hostname's requests go to
(router/edge_dns.py), and the server Caddy asks them from."""

import socket

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from router import edge_dns
from router.routes import EdgeRoutes

D = "apps.example.com"
pytestmark = pytest.mark.unit

R5, R6, R7 = "100.96.0.5:7080", "100.96.0.6:7080", "100.96.0.7:7080"


def test_an_app_goes_to_the_routers_running_it_and_anything_else_to_every_router_up():
    routes = EdgeRoutes.build(D, ["blog", "shop", "idle"], [R5, R6, R7], {"shop": ["www.shop.org"]},
                              {"blog": [R6], "shop": [R5, R7]}, down=[R7])
    assert edge_dns.answers(routes) == {
        "hosts": {f"blog.{D}": ["100.96.0.6"], f"shop.{D}": ["100.96.0.5"], "www.shop.org": ["100.96.0.5"]},
        "default": ["100.96.0.5", "100.96.0.6"],  # idle, unknown names: any router up forwards or says why
    }


def test_an_app_whose_routers_are_all_down_goes_to_every_router_up():
    routes = EdgeRoutes.build(D, ["blog"], [R5, R6], placed={"blog": [R6]}, down=[R6])
    assert edge_dns.answers(routes) == {"hosts": {}, "default": ["100.96.0.5"]}
    everyone_down = EdgeRoutes.build(D, ["blog"], [R5, R6], placed={"blog": [R6]}, down=[R5, R6])
    assert edge_dns.answers(everyone_down)["default"] == ["100.96.0.5", "100.96.0.6"]  # nobody else to try


def query(name: str, qtype: str = "A") -> bytes:
    return DNSRecord.question(name, qtype).pack()


TABLE = {"hosts": {f"blog.{D}": ["100.96.0.6"]}, "default": ["100.96.0.5", "100.96.0.6"]}


@pytest.mark.parametrize("host, ips", [(f"blog.{D}", ["100.96.0.6"]), (f"BLOG.{D}", ["100.96.0.6"]),
                                       (f"nope.{D}", ["100.96.0.5", "100.96.0.6"])])
def test_a_lookup_in_the_zone_is_answered_with_the_hostnames_routers(host, ips):
    reply = DNSRecord.parse(edge_dns.respond(query(f"{host}.{edge_dns.ZONE}."), TABLE))
    assert reply.header.rcode == RCODE.NOERROR
    assert sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A) == ips


def test_other_names_are_refused_and_garbage_is_not_answered():
    refused = DNSRecord.parse(edge_dns.respond(query("example.com."), TABLE))
    assert refused.header.rcode == RCODE.REFUSED and not refused.rr
    aaaa = DNSRecord.parse(edge_dns.respond(query(f"blog.{D}.{edge_dns.ZONE}.", "AAAA"), TABLE))
    assert aaaa.header.rcode == RCODE.NOERROR and not aaaa.rr  # IPv4 only: no error, no address
    assert edge_dns.respond(b"\x00\x01garbage", TABLE) is None


def ask(port: int, name: str) -> list[str]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(query(name), ("127.0.0.1", port))
        return sorted(str(rr.rdata) for rr in DNSRecord.parse(s.recv(4096)).rr)


def test_the_server_answers_what_the_edge_wrote_last_and_comes_back_on_its_port(tmp_path):
    dns = edge_dns.DnsProcess(tmp_path)
    dns.start()
    try:
        name = f"blog.{D}.{edge_dns.ZONE}."
        assert ask(dns.port, name) == []  # nothing written yet: no router to name
        dns.write(TABLE)
        assert ask(dns.port, name) == ["100.96.0.6"]
        dns.write({"hosts": {f"blog.{D}": ["100.96.0.7"]}, "default": []})  # blog moved
        assert ask(dns.port, name) == ["100.96.0.7"]
        port = dns.port
        dns.proc.kill()
        dns.proc.wait()
        assert dns.start() == f"127.0.0.1:{port}"  # Caddy's config names this port
        assert ask(dns.port, name) == ["100.96.0.7"]
    finally:
        dns.stop()
