"""Ingress routes from cluster state, as tables: which instances get traffic, with which policy."""

from __future__ import annotations

import pytest

from router.routes import AppRoute
from vcapp.edge.daemon import router_address
from vcapp.views import ingress
from vcapp.views.ingress import ClusterView, edge_hosts, edge_routes, node_routes

pytestmark = pytest.mark.unit

NODES = {"home-1": "10.1.0.11", "home-2": "10.1.0.12"}
API = {"home-1": "10.1.0.11:7180", "home-2": "10.1.0.12:7180"}


def report(node, app, inst="0", port=20001, state="running", health="healthy", **extra):
    return {"node": node, "app": app, "instance": inst, "state": state, "health": health, "host_port": port,
            **extra}


def view(apps, reports, nodes=NODES, edges=("100.96.0.1",)):
    return ClusterView("apps.example.com", apps, reports, dict(nodes), {n: API[n] for n in nodes}, edges)


def route(v: ClusterView, app: str) -> AppRoute:
    return dict(node_routes(v).apps)[app]


@pytest.mark.parametrize("rep, backends", [
    (report("home-1", "blog"), ("10.1.0.11:7081",)),
    (report("home-1", "blog", health="starting"), ()),
    (report("home-1", "blog", health="unhealthy"), ()),
    (report("home-1", "blog", state="exited"), ()),
    (report("home-1", "blog", health="-"), ("10.1.0.11:7081",)),  # no health check: running is enough
    (report("home-1", "blog", port=None), ()),
    (report("office-9", "blog"), ()),  # a machine that is not alive
    (report("home-1", "other"), ()),
    (report("home-1", "blog", process="web"), ("10.1.0.11:7081",)),
    (report("home-1", "blog", "worker-0", process="worker", health="-"), ()),  # workers get no HTTP
])
def test_backends_are_serving_instances_on_live_machines(rep, backends):
    """Seen from a router without instances of its own: the routers of the machines that serve."""
    assert route(view({"blog": {}}, [rep]), "blog").backends == backends


def test_an_app_on_two_machines_gets_both_and_the_table_is_order_free():
    reps = [report("home-2", "blog", "1", 20007), report("home-1", "blog", "0", 20001),
            report("home-1", "blog", "2", 20002)]
    v1, v2 = view({"blog": {}}, reps), view({"blog": {}}, list(reversed(reps)))
    assert route(v1, "blog").backends == ("10.1.0.11:7081", "10.1.0.12:7081")  # one hop port a machine
    assert node_routes(v1) == node_routes(v2)  # equal tables: the router reloads only on change


def test_instance_moved_to_another_machine_moves_the_backend():
    before = view({"blog": {}}, [report("home-1", "blog", port=20001)])
    after = view({"blog": {}}, [report("home-2", "blog", port=20003)])
    assert route(before, "blog").backends == ("10.1.0.11:7081",)
    assert route(after, "blog").backends == ("10.1.0.12:7081",)
    assert node_routes(before) != node_routes(after)


def test_a_node_router_prefers_its_own_instances_and_the_edge_brings_it_the_apps_it_runs():
    reports = [report("home-1", "blog"), report("home-2", "blog", port=20002), report("home-2", "shop")]
    v = view({"blog": {}, "shop": {}, "idle": {}}, reports)
    one, two = node_routes(v, "home-1"), node_routes(v, "home-2")
    # Its own instances on loopback (where they publish), the others through their machine's router.
    assert dict(one.apps)["blog"].local == ("127.0.0.1:20001",)
    assert dict(one.apps)["blog"].backends == ("127.0.0.1:20001", "10.1.0.12:7081")
    assert dict(two.apps)["blog"].local == ("127.0.0.1:20002",)
    assert dict(one.apps)["shop"].local == () and dict(one.apps)["shop"].backends == ("10.1.0.12:7081",)
    assert one.machines == ("10.1.0.11", "10.1.0.12")  # who may use the hop servers
    # The edge brings each app to the routers running it; one running nowhere, to any router.
    assert dict(edge_routes(v, []).placed) == {"blog": ("10.1.0.11:7080", "10.1.0.12:7080"),
                                               "shop": ("10.1.0.12:7080",)}


def test_a_container_leaving_a_machine_stays_on_its_hop_only_while_its_switch_is_open():
    # blog/1 left home-1 (report gone, switch open): home-1's hop still serves it, home-1's
    # own visitors and the edges go to home-2, and no other router hears of the port.
    v = view({"blog": {}, "shop": {}}, [report("home-2", "blog", port=20002)])
    leaving = {"blog": (20001,)}
    one = dict(node_routes(v, "home-1", leaving).apps)["blog"]
    assert one.retiring == ("127.0.0.1:20001",) and one.local == () and one.backends == ("10.1.0.12:7081",)
    assert dict(edge_routes(v, []).placed)["blog"] == ("10.1.0.12:7080",)
    assert dict(node_routes(v, "home-1", leaving).apps)["shop"].retiring == ()
    assert node_routes(v, "home-1", leaving) != node_routes(v, "home-1")  # closing it reloads the hop
    assert route(v, "blog").retiring == ()  # a router without a machine has no hop
    # announced before its report goes: nothing changes (no reload) while it is still local
    still = view({"blog": {}}, [report("home-1", "blog", "1", 20001), report("home-2", "blog", port=20002)])
    assert node_routes(still, "home-1", leaving) == node_routes(still, "home-1")


def test_policy_and_custom_domains_come_from_the_spec():
    spec = {"policy": "token", "health": {"type": "http", "path": "/healthz"}, "domains": ["www.example.org", "bad_name"]}
    r = route(view({"vault": spec}, []), "vault")
    assert (r.policy, r.domains, r.backends) == ("token", ("www.example.org",), ())
    assert route(view({"blog": {}}, []), "blog").policy == "public"


def test_apps_the_routers_cannot_serve_are_left_out_not_fatal():
    v = view({"api": {}, "Bad": {}, "blog": {}, "odd": {"policy": "secret"}}, [])
    assert [name for name, _ in node_routes(v).apps] == ["blog"]


def test_api_backends_and_trusted_edges():
    t = node_routes(view({}, [], edges=("100.96.0.1", "203.0.113.10", "edge.example.com")))
    assert t.api == ("10.1.0.11:7180", "10.1.0.12:7180")
    assert t.trusted_proxies == ("100.96.0.1/32", "203.0.113.10/32")
    assert edge_hosts({"edge": "203.0.113.10:8443"}) == ("100.96.0.1", "203.0.113.10")
    assert edge_hosts({"edge": ""}) == ("100.96.0.1",)


def test_edge_table_lists_apps_domains_and_node_routers():
    v = view({"blog": {"domains": ["www.blog.org"]}, "shop": {}}, [])
    t = edge_routes(v, ["10.1.0.12:7080", "10.1.0.11:7080"])
    assert t.hostnames() == ["api.apps.example.com", "blog.apps.example.com", "shop.apps.example.com", "www.blog.org"]
    assert t.nodes == ("10.1.0.11:7080", "10.1.0.12:7080")


@pytest.mark.parametrize("given, addr", [("10.1.0.11", "10.1.0.11:7080"), ("10.1.0.11:9000", "10.1.0.11:9000"),
                                         (" 100.96.0.5 ", "100.96.0.5:7080")])
def test_edge_node_addresses_default_to_the_node_router_port(given, addr):
    assert router_address(given) == addr


IMAGE = {"image": "10.1.0.11:5000/apps/blog@sha256:" + "a" * 64, "release": 3, "count": 1}


@pytest.mark.parametrize("spec, reports, pending, build, down, detail", [
    ({}, [], {}, None, "undeployed",
     "To deploy it, push its code: git push https://api.apps.example.com/git/blog.git main"),
    ({}, [], {}, {"number": 2, "sha": "889e2a5" + "0" * 33, "result": "failed",
                  "reason": "build failed (buildah exited 1): fix the failing step shown above\nmore"},
     "build-failed", "Build 2 (889e2a5) failed; its log: vcapp builds log blog"),
    ({}, [], {}, {"number": 1, "result": "building"}, "deploying", ""),
    ({}, [], {}, {"number": 1, "result": "succeeded"}, "undeployed",  # an --image app made since, destroyed...
     "To deploy it, push its code: git push https://api.apps.example.com/git/blog.git main"),
    (dict(IMAGE, count=0), [], {}, None, "stopped", "To start it: vcapp scale blog --count 1"),
    (IMAGE, [], {"instances": {"0": "no machine has 512 MB free", "worker-0": "x"}}, None, "no-room",
     "`vcapp ps blog` says what it needs"),
    (IMAGE, [], {"instances": {"worker-0": "no machine has room"}}, None, None, ""),  # a worker: not web's
    (IMAGE, [report("home-1", "blog", state="exited", message="exited with code 3")], {}, None, "crashed",
     "`vcapp ps blog` and `vcapp logs blog` say why"),
    (IMAGE, [report("home-1", "blog", health="unhealthy", message="HTTP 500 from /healthz")], {}, None,
     "unhealthy", "`vcapp ps blog` shows the check's answer"),
    (IMAGE, [report("office-9", "blog", state="exited")], {}, None, None, ""),  # a dead machine's report
    (IMAGE, [report("home-1", "blog", health="starting")], {}, None, None, ""),  # just deployed
])
def test_an_app_without_backends_says_why_it_is_down(spec, reports, pending, build, down, detail):
    v = ClusterView("apps.example.com", {"blog": spec}, reports, dict(NODES), dict(API), (),
                    {"blog": pending} if pending else {}, {"blog": build} if build else {})
    r = route(v, "blog")
    assert (r.backends, r.down, r.down_detail) == ((), down, detail)


def test_a_serving_app_has_no_down_reason_and_the_public_page_tells_no_secret():
    assert route(view({"blog": IMAGE}, [report("home-1", "blog")]), "blog").down is None
    secret = "DATABASE_URL=postgres://admin:hunter2@db"
    v = ClusterView("apps.example.com", {"blog": IMAGE}, [report("home-1", "blog", state="exited", message=secret)],
                    dict(NODES), dict(API), (), {"blog": {"instances": {"0": "needs 900 MB; " + secret}}})
    assert secret not in route(v, "blog").down_detail
    assert ingress.short("why " * 200).endswith("…") and len(ingress.short("why " * 200)) == 300


def test_a_dead_machine_stays_a_hop_client_and_is_named_down():
    members = {**NODES, "home-3": "100.96.0.13"}
    v = ClusterView("apps.example.com", {"blog": {}}, [report("home-3", "blog")], nodes=NODES, members=members)
    routes = node_routes(v, "home-1")
    assert routes.machines == tuple(sorted(members.values()))  # its hop allow list does not change
    assert routes.down == ("100.96.0.13",)  # its connections are cut
    assert dict(routes.apps)["blog"].backends == ()  # and nothing is sent to its instance
    assert node_routes(ClusterView("apps.example.com", nodes=NODES), "home-1").down == ()
