"""The edge's DNS answers: which node routers each hostname's requests go to
(router/edge_dns.py; the server Caddy asks them from: tests/router/test_answers.py)."""

import pytest

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
