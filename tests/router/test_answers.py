"""The DNS answers server a router's Caddy asks (router/answers.py): A records of the edge's
hostnames, SRV records of a node router's instances, and the addresses those name."""

import socket

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from router import answers
from router.dnsprocess import DnsProcess

D = "apps.example.com"
pytestmark = pytest.mark.unit


def query(name: str, qtype: str = "A") -> bytes:
    return DNSRecord.question(name, qtype).pack()


TABLE = {"hosts": {f"blog.{D}": ["100.96.0.6"]}, "default": ["100.96.0.5", "100.96.0.6"]}


@pytest.mark.parametrize("host, ips", [(f"blog.{D}", ["100.96.0.6"]), (f"BLOG.{D}", ["100.96.0.6"]),
                                       (f"nope.{D}", ["100.96.0.5", "100.96.0.6"])])
def test_a_lookup_in_the_zone_is_answered_with_the_hostnames_routers(host, ips):
    reply = DNSRecord.parse(answers.respond(query(f"{host}.{answers.ZONE}."), TABLE))
    assert reply.header.rcode == RCODE.NOERROR
    assert sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A) == ips


SRV_TABLE = {"srv": {"blog.node": [[20001, "ip-127-0-0-1"], [7081, "ip-100-96-0-6"]]}}


def test_an_apps_instances_are_srv_records_naming_addresses_that_resolve_to_themselves():
    reply = DNSRecord.parse(answers.respond(query(f"blog.node.{answers.ZONE}.", "SRV"), SRV_TABLE))
    records = [(rr.rdata.port, str(rr.rdata.target)) for rr in reply.rr if rr.rtype == QTYPE.SRV]
    assert records == [(20001, f"ip-127-0-0-1.{answers.ZONE}."), (7081, f"ip-100-96-0-6.{answers.ZONE}.")]
    for port, name in records:
        (a,) = DNSRecord.parse(answers.respond(query(name), SRV_TABLE)).rr
        assert f"{a.rdata}:{port}" == answers.dial_address(f"{name}:{port}")
    assert answers.dial_address(f"{answers.target('127.0.0.1')}.{answers.ZONE}.:20001") == "127.0.0.1:20001"
    nothing = DNSRecord.parse(answers.respond(query(f"shop.node.{answers.ZONE}.", "SRV"), SRV_TABLE))
    assert nothing.header.rcode == RCODE.NOERROR and not nothing.rr
    bad = DNSRecord.parse(answers.respond(query(f"ip-300-1-1-1.{answers.ZONE}."), SRV_TABLE))
    assert not bad.rr  # not an address: no record, not an error


def test_other_names_are_refused_and_garbage_is_not_answered():
    refused = DNSRecord.parse(answers.respond(query("example.com."), TABLE))
    assert refused.header.rcode == RCODE.REFUSED and not refused.rr
    aaaa = DNSRecord.parse(answers.respond(query(f"blog.{D}.{answers.ZONE}.", "AAAA"), TABLE))
    assert aaaa.header.rcode == RCODE.NOERROR and not aaaa.rr  # IPv4 only: no error, no address
    assert answers.respond(b"\x00\x01garbage", TABLE) is None


def ask(port: int, name: str) -> list[str]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(query(name), ("127.0.0.1", port))
        return sorted(str(rr.rdata) for rr in DNSRecord.parse(s.recv(4096)).rr)


def test_the_server_answers_what_its_router_wrote_last_and_comes_back_on_its_port(tmp_path):
    dns = DnsProcess(tmp_path)
    dns.start()
    try:
        name = f"blog.{D}.{answers.ZONE}."
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


def test_a_remembered_reply_is_the_reply_with_the_querys_id_until_the_table_changes():
    replies, table = answers.Replies(), {"srv": {"blog.node": [[20001, answers.target("100.96.0.5")]]}}
    first = DNSRecord.question(f"blog.node.{answers.ZONE}.", "SRV")
    again = DNSRecord.question(f"blog.node.{answers.ZONE}.", "SRV")
    assert first.header.id != again.header.id
    for q in (first, again):
        got = replies.answer(q.pack(), table)
        assert got == answers.respond(q.pack(), table)
        assert DNSRecord.parse(got).header.id == q.header.id
    moved = {"srv": {"blog.node": [[20002, answers.target("100.96.0.6")]]}}
    reply = DNSRecord.parse(replies.answer(again.pack(), moved))
    assert [(rr.rdata.port, str(rr.rdata.target)) for rr in reply.rr] == [(20002, f"ip-100-96-0-6.{answers.ZONE}.")]
    assert replies.answer(b"\x00\x01junk", moved) is None
