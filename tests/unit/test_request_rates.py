"""Request rates per app from Caddy's per-host counters (pure)."""

from __future__ import annotations

from router import requestcount
from vcapp.node.metrics_loop import RequestRates, app_of_host

CADDY_METRICS = """
# TYPE caddy_http_request_duration_seconds histogram
caddy_http_request_duration_seconds_count{code="200",handler="reverse_proxy",host="blog.apps.test",method="GET",server="node"} 40
caddy_http_request_duration_seconds_count{code="502",handler="reverse_proxy",host="blog.apps.test",method="GET",server="node"} 2
caddy_http_request_duration_seconds_count{code="200",handler="reverse_proxy",host="vault.apps.test",method="GET",server="node"} 7
caddy_http_request_duration_seconds_count{code="200",handler="reverse_proxy",host="vault.apps.test",method="POST",server="node"} 3
caddy_http_request_duration_seconds_count{code="401",handler="reverse_proxy",host="vault.apps.test",method="GET",server="node"} 5
caddy_http_request_duration_seconds_count{code="200",handler="subroute",host="vault.apps.test",method="GET",server="node"} 7
caddy_http_request_duration_seconds_count{code="404",handler="static_response",host="_other",method="GET",server="node"} 9
caddy_http_requests_total{handler="reverse_proxy",host="blog.apps.test",server="node"} 42
"""


def test_requests_and_server_errors_per_host():
    counts = requestcount.parse(CADDY_METRICS)
    assert counts == {"blog.apps.test": {"requests": 42, "errors": 2},
                      "vault.apps.test": {"requests": 15, "errors": 0}}


def test_a_request_hopped_from_another_router_is_counted_where_it_came_in():
    hopped = CADDY_METRICS + (
        'caddy_http_request_duration_seconds_count{code="200",handler="reverse_proxy",host="blog.apps.test",'
        'method="GET",server="hop"} 30\n')
    assert requestcount.parse(hopped)["blog.apps.test"]["requests"] == 72  # both servers, as before
    assert requestcount.parse(hopped, exclude=("hop",))["blog.apps.test"]["requests"] == 42


def test_rates_per_app_over_all_routers_and_a_router_restart():
    rates = RequestRates()
    app_of = app_of_host("apps.test", [{"name": "blog", "domains": ["www.blog.org"]}])
    first = {"home-1": {"at": 100.0, "hosts": {"blog.apps.test": {"requests": 100, "errors": 0}}},
             "home-2": {"at": 101.0, "hosts": {"www.blog.org": {"requests": 50, "errors": 5}}}}
    assert rates.sample(first, app_of) == {}  # one reading: no rate yet
    second = {"home-1": {"at": 110.0, "hosts": {"blog.apps.test": {"requests": 300, "errors": 10}}},
              "home-2": {"at": 111.0, "hosts": {"www.blog.org": {"requests": 20, "errors": 0}}}}  # restarted
    assert rates.sample(second, app_of) == {"blog": {"req_s": 22.0, "err_s": 1.0}}
    # No new reading from either router since: the last rates stand (no aliasing to zero).
    assert rates.sample(second, app_of) == {"blog": {"req_s": 22.0, "err_s": 1.0}}
    assert app_of("unknown.apps.test") is None and app_of("blog.apps.test") == "blog"
