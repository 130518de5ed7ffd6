"""The simulated network behaves like two NATed sites on the internet, and is closed."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

PROBE = str(Path(__file__).resolve().parent.parent / "helpers" / "netprobe.py")


def seen_source(sim, sender: str, receiver: str, proto: str, port: int = 7000, sport: int = 40000) -> str | None:
    """Send one message sender -> receiver's public address; return "ip:port" as the receiver saw it."""
    recv = sim.dc.spawn(receiver, [sys.executable, PROBE, "recv", proto, str(port), "4"], stdout=subprocess.PIPE)
    try:
        assert recv.stdout.readline().strip() == b"ready"
        sim.run(sender, sys.executable, PROBE, "send", proto, sim.addr(receiver), str(port), str(sport), check=False)
        out, _ = recv.communicate(timeout=10)
    finally:
        recv.kill()
    return out.decode().strip() or None


def test_machines_have_their_own_hostname_and_address(sim):
    for host in ("home-1", "home-2", "office-1", "edge", "client"):
        assert sim.run(host, "hostname").stdout.strip() == host
        assert sim.addr(host) in sim.run(host, "ip", "-4", "-o", "addr").stdout


def test_sites_reach_each_others_router_but_not_lan(sim):
    assert sim.ping("home-1", sim.addr("office"))  # the office router's public address
    assert sim.ping("office-1", sim.addr("home"))
    assert not sim.ping("home-1", sim.addr("office-1"))  # the office LAN stays private
    assert not sim.ping("office-1", sim.addr("home-1"))
    assert sim.ping("home-1", sim.addr("home-2"))  # same LAN: direct


def test_router_drops_unsolicited_traffic_even_with_a_route(sim):
    # Someone on the internet who routes the home LAN at the router still gets nothing.
    sim.run("client", "ip", "route", "replace", "10.1.0.0/24", "via", sim.addr("home"))
    try:
        assert not sim.ping("client", sim.addr("home-1"))
    finally:
        sim.run("client", "ip", "route", "del", "10.1.0.0/24")


def test_outbound_traffic_leaves_through_the_site_nat(sim):
    src = seen_source(sim, "home-1", "client", "tcp")
    assert src is not None and src.split(":")[0] == sim.addr("home")
    src = seen_source(sim, "office-1", "edge", "udp")
    assert src == f"{sim.addr('office')}:40000"  # an easy NAT keeps the source port


def test_topology_is_closed(sim):
    # No host can route anywhere but the simulated networks (the question sends nothing).
    for host in ("client", "edge", "home-1", "office-1"):
        proc = sim.run(host, "ip", "route", "get", "8.8.8.8", check=False)
        assert proc.returncode != 0 or " via 10." in proc.stdout, proc.stdout
    for router in ("home", "office", "net"):
        proc = subprocess.run(["ip", "-n", sim.topology.ns(router), "route", "get", "8.8.8.8"], capture_output=True, text=True)
        assert proc.returncode != 0, proc.stdout


def test_office_nat_modes(sim):
    try:
        sim.dc.set_nat("office", "hard")
        ports = {seen_source(sim, "office-1", "client", "udp", sport=40000 + i) for i in range(3)}
        assert None not in ports
        assert all(p.startswith(sim.addr("office") + ":") for p in ports)
        assert all(not p.endswith(f":{40000 + i}") for i, p in enumerate(sorted(ports)))

        sim.dc.set_nat("office", "udp-blocked")
        assert seen_source(sim, "office-1", "client", "udp") is None
        assert seen_source(sim, "office-1", "client", "tcp") is not None
    finally:
        sim.dc.set_nat("office", "easy")
    assert seen_source(sim, "office-1", "client", "udp") == f"{sim.addr('office')}:40000"


def test_partition_cuts_the_link_but_keeps_the_machine_running(sim):
    sleeper = sim.spawn("home-2", "sleep", "300")
    sim.dc.partition("home-2")
    try:
        assert not sim.ping("home-2", sim.addr("home-1"))
        assert not sim.ping("home-1", sim.addr("home-2"))
        assert sleeper.poll() is None
        status = {h["name"]: h for h in sim.dc.status()["hosts"]}
        assert status["home-2"]["partitioned"] and status["home-2"]["power"] == "on"
    finally:
        sim.dc.partition("home-2", cut=False)
    assert sim.ping("home-2", sim.addr("home-1"), count=3)
    sleeper.kill()
