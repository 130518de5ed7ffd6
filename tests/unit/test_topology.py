"""The simulated topology's shape and the validation of what an admin asks for."""

import pytest

from vcapp.dev.topology import Topology, TopologyError, build, default

pytestmark = pytest.mark.unit


def test_default_shape_and_addresses():
    topo = default("dev")
    hosts = {h.name: h for h in topo.hosts()}
    assert [h.name for h in topo.machines()] == ["home-1", "home-2", "office-1"]
    assert hosts["home-2"].addr == "10.1.0.12" and hosts["home-2"].gateway == "10.1.0.1"
    assert hosts["office-1"].addr == "10.2.0.11" and hosts["office"].addr == "203.0.113.22"
    assert hosts["edge"].addr == "203.0.113.10" and hosts["client"].addr == "203.0.113.100"
    assert topo.ns("home-1") == "vc-dev-home-1"


def test_every_address_is_a_documentation_or_private_range():
    import ipaddress

    allowed = [ipaddress.ip_network(n) for n in ("203.0.113.0/24", "10.0.0.0/8")]
    for host in build("x", [("a", 5, "easy"), ("b", 5, "hard")]).hosts():
        if host.addr:
            assert any(ipaddress.ip_address(host.addr) in net for net in allowed), host


def test_round_trip_through_dict():
    topo = default("c1", home=1, office=2, office_nat="udp-blocked")
    assert Topology.from_dict(topo.to_dict()) == topo


@pytest.mark.parametrize("cluster,sites,message", [
    ("", [("home", 1, "easy")], "cluster name"),
    ("bad-name", [("home", 1, "easy")], "cluster name"),
    ("c", [("home", 13, "easy")], "1 to 12 machines"),
    ("c", [("home", 0, "easy")], "1 to 12 machines"),
    ("c", [("home", 1, "easy"), ("home", 1, "easy")], "must differ"),
    ("c", [("Home", 1, "easy")], "lowercase letters"),
    ("c", [("edge", 1, "easy")], "taken"),
    ("c", [("home", 1, "strict")], "NAT mode 'strict' unknown"),
])
def test_bad_requests_say_what_to_change(cluster, sites, message):
    with pytest.raises(TopologyError, match=message):
        build(cluster, sites)
