"""The simulated internet's one way out (vcapp/dev/egress.py): the proxy answers only for the
registries on its list, and nothing else leaves the cluster's namespaces.

No request here reaches a real outside address: refused names never resolve or connect
(the proxy refuses them first), and the host's own address is the only other target."""

from __future__ import annotations

import socket
import subprocess
import threading

import pytest

from vcapp.dev import egress, netns

pytestmark = pytest.mark.cluster

REFUSED_NAME = "example.invalid"  # reserved: never resolves anywhere (RFC 6761)


@pytest.fixture(scope="module")
def sim(make_sim):
    return make_sim(home=1, office=1)


def host_address() -> str:
    """The host's own address on its real network (the source of its default route)."""
    out = subprocess.run(["ip", "-4", "-o", "route", "get", "192.0.2.123"], capture_output=True, text=True).stdout
    fields = out.split()
    return fields[fields.index("src") + 1]


@pytest.fixture(scope="module")
def host_listener():
    """A TCP port on every address of the host: what a namespace must not reach."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 0))
    server.listen(16)
    accepted: list[str] = []

    def serve():
        while True:
            try:
                conn, peer = server.accept()
            except OSError:
                return
            accepted.append(peer[0])
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()


def proxy_log(sim) -> str:
    return (sim.dc.egress_dir / "tinyproxy.log").read_text(errors="replace")


def test_the_proxy_refuses_a_destination_not_on_its_list(sim):
    proxy = sim.dc.proxy_url
    assert proxy.startswith("http://198.51.100.") and proxy.endswith(f":{egress.PROXY_PORT}")

    plain = sim.fetch(f"http://{REFUSED_NAME}/", "-x", proxy, "-w", "\n%{http_code}", host="home-1")
    assert plain.stdout.endswith("\n403"), plain.stdout + plain.stderr
    assert "vcapp dev proxy: Filtered" in plain.stdout
    assert "pypi.org, files.pythonhosted.org, deb.debian.org" in plain.stdout  # says what is reachable

    tunnel = sim.fetch(f"https://{REFUSED_NAME}/", "-x", proxy, host="office-1")
    assert tunnel.returncode != 0 and "CONNECT tunnel failed, response 403" in tunnel.stderr

    # An allowed name on a port the proxy does not tunnel to: refused before any connection.
    port = sim.fetch("https://pypi.org:25/", "-x", proxy, host="home-1")
    assert port.returncode != 0 and "response 403" in port.stderr

    log = proxy_log(sim)
    assert f'refused on filtered domain "{REFUSED_NAME}"' in log
    assert "Established connection" not in log  # none of the three went anywhere


def test_no_namespace_routes_to_the_hosts_network(sim, host_listener):
    port, accepted = host_listener
    real = host_address()
    topo = sim.topology
    for ns in netns.list_namespaces(topo.ns_prefix):
        routes = netns.run(["ip", "-n", ns, "-4", "route", "show"]).stdout
        host = ns[len(topo.ns_prefix):]
        if topo.host(host).role == "machine":  # the way to its own site router, nothing further
            assert f"default via {topo.host(host).gateway} " in routes, routes
        else:
            assert "default" not in routes, (ns, routes)
        if topo.host(host).role != "machine":
            assert netns.run(["ip", "-n", ns, "route", "get", real], check=False).returncode != 0, (ns, routes)
    link = egress.Link(sim.dc._load()["egress"]["slot"])
    for host in ("home-1", "office-1", "edge", "client"):
        for target in (real, link.proxy_addr):  # the proxy's own address: only its port is forwarded
            connect = sim.run(host, "curl", "-sS", "--max-time", "3", f"http://{target}:{port}/", check=False)
            assert connect.returncode != 0, (host, target, connect.stdout)
    assert accepted == []


def test_an_allowed_registry_answers_through_the_proxy(sim):
    """The one way out works: pip's index for a small package, from a machine behind NAT."""
    answer = sim.fetch("https://pypi.org/simple/six/", "-x", sim.dc.proxy_url, "-o", "/dev/null",
                       "-w", "%{http_code}", host="office-1", timeout=30)
    assert answer.stdout == "200", answer.stderr
    direct = sim.fetch("https://pypi.org/simple/six/", host="office-1", timeout=5)
    assert direct.returncode != 0  # without the proxy: no way out at all
