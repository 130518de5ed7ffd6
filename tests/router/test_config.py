"""Routes tables -> Caddy JSON, and the reconcile decision (pure; Caddy itself accepts these
documents in the cluster tests, which load them into real Caddy processes)."""

import json
from dataclasses import replace

import pytest

from router import caddyjson, edge_config, node_config, node_dns
from router.caddy import CaddyProcess
from router.config_sync import ConfigSync
from router.edge import Edge
from router.routes import AppRoute, EdgeRoutes, NodeRoutes, RoutesError

pytestmark = pytest.mark.unit

D = "apps.example.com"
EDGE = edge_config.EdgeSettings("/run/e/admin.sock", "/var/lib/e", dev=True, resolver="127.0.0.1:5353")
NODE = node_config.NodeSettings("/run/n/admin.sock", "/var/lib/n", "100.96.0.5:7080", "unix//run/n/auth.sock",
                                "127.0.0.1:5353", "/var/lib/n/pages")


def host_matches(host: str, pattern: str) -> bool:
    """Caddy's host matcher: a `*` stands for one whole label."""
    labels, wanted = host.split("."), pattern.split(".")
    return len(labels) == len(wanted) and all(w in ("*", h) for h, w in zip(labels, wanted))


def handlers_for(doc: dict, server: str, host: str) -> list[dict]:
    routes = doc["apps"]["http"]["servers"][server]["routes"]
    for route in routes:
        if "match" not in route and route is routes[-1]:
            return route["handle"]  # every other host
        for m in route.get("match", []):
            if any(host_matches(host, pattern) for pattern in m.get("host", [])):
                return route["handle"]
    raise AssertionError(f"no route for {host}")


def test_edge_sends_the_api_to_any_router_and_each_app_to_the_routers_its_answers_name():
    routes = EdgeRoutes.build(D, ["blog", "shop"], ["100.96.0.5:7080", "100.96.0.6:7080"], {"shop": ["www.shop.org"]})
    doc = edge_config.render(routes, EDGE)
    assert routes.hostnames() == [f"api.{D}", f"blog.{D}", f"shop.{D}", "www.shop.org"]
    (api,) = handlers_for(doc, "edge", f"api.{D}")
    assert api["health_checks"]["active"]["uri"] == caddyjson.NODE_HEALTH_PATH
    assert api["health_checks"]["active"]["headers"]["Host"] == [caddyjson.NODE_HEALTH_HOST]
    assert api["load_balancing"]["try_duration"] == caddyjson.TRY_DURATION
    for host in (f"blog.{D}", f"shop.{D}", f"never-deployed.{D}", "www.shop.org"):
        (proxy,) = handlers_for(doc, "edge", host)
        # The routers the edge's DNS answers name for the request's own hostname (router/edge_dns.py) ...
        assert proxy["dynamic_upstreams"] == {
            "source": "a", "name": "{http.request.host}.routes.vcapp.invalid.", "port": "7080", "refresh": "1s",
            "resolver": {"addresses": ["udp/127.0.0.1:5353"]}, "dial_timeout": "1s", "versions": {"ipv4": True}}
        # ... or, when the lookup fails, any router (each one forwards).
        assert [u["dial"] for u in proxy["upstreams"]] == ["100.96.0.5:7080", "100.96.0.6:7080"]
        assert proxy["load_balancing"]["try_duration"] == caddyjson.PREFERRED_TRY_DURATION
        assert proxy["health_checks"]["passive"]["max_fails"] == caddyjson.MAX_FAILS  # a dead router rests
        assert "active" not in proxy["health_checks"]
    (page,) = handlers_for(doc, "edge", "not-ours.example.net")
    assert page["status_code"] == 404
    # Nobody running an app available: any node router takes the request.
    (fallback,) = doc["apps"]["http"]["servers"]["edge"]["errors"]["routes"]
    assert fallback["match"] == [{"expression": '{http.error.status_code} == 503 || ({http.error.status_code} == 502 '
                                                '&& {http.request.method} in ["GET", "HEAD", "OPTIONS"])'}]
    (proxy,) = fallback["handle"]
    assert proxy["health_checks"]["active"]["uri"] == caddyjson.NODE_HEALTH_PATH
    assert [u["dial"] for u in proxy["upstreams"]] == ["100.96.0.5:7080", "100.96.0.6:7080"]
    assert doc["admin"]["listen"] == "unix//run/e/admin.sock"


def test_new_apps_deploys_moves_and_dead_machines_leave_the_edge_config_as_it_is():
    """Every reload closes a few requests in flight (bench/edge_reload_bench.py): only a
    machine joining or leaving, a custom domain or the edge's settings may change it."""
    nodes = ["100.96.0.5:7080", "100.96.0.6:7080"]
    before = EdgeRoutes.build(D, ["blog"], nodes, {}, {"blog": ["100.96.0.5:7080"]})
    after = EdgeRoutes.build(D, ["blog", "shop", "new"], nodes, {}, {"blog": ["100.96.0.6:7080"],
                             "shop": nodes}, down=["100.96.0.5:7080"])
    assert edge_config.render(before, EDGE) == edge_config.render(after, EDGE)
    joined = EdgeRoutes.build(D, ["blog"], [*nodes, "100.96.0.7:7080"], {}, {"blog": ["100.96.0.5:7080"]})
    domain = EdgeRoutes.build(D, ["blog"], nodes, {"blog": ["www.blog.org"]}, {"blog": ["100.96.0.5:7080"]})
    assert edge_config.render(joined, EDGE) != edge_config.render(before, EDGE)
    assert edge_config.render(domain, EDGE) != edge_config.render(before, EDGE)


def test_without_answers_every_app_goes_to_any_router():
    """Routers on different ports (an answer names addresses only), or no answers server."""
    mixed = EdgeRoutes.build(D, ["blog"], ["100.96.0.5:7080", "100.96.0.6:7081"])
    for doc in (edge_config.render(mixed, EDGE), edge_config.render(mixed, replace(EDGE, resolver=None))):
        (proxy,) = handlers_for(doc, "edge", f"blog.{D}")
        assert "dynamic_upstreams" not in proxy
        assert [u["dial"] for u in proxy["upstreams"]] == ["100.96.0.5:7080", "100.96.0.6:7081"]


def test_dev_edge_uses_the_internal_ca_and_production_uses_acme():
    routes = EdgeRoutes.build(D, ["blog"], ["100.96.0.5:7080"])
    dev = edge_config.render(routes, EDGE)
    assert dev["apps"]["tls"]["automation"]["policies"][0]["issuers"][0]["module"] == "internal"
    assert dev["apps"]["tls"]["certificates"]["automate"] == [f"*.{D}"]
    assert dev["apps"]["pki"]["certificate_authorities"]["local"]["install_trust"] is False
    prod = edge_config.render(routes, edge_config.EdgeSettings("/s", "/d", acme_email="ops@example.com"))
    issuer = prod["apps"]["tls"]["automation"]["policies"][0]["issuers"][0]
    assert issuer == {"module": "acme", "email": "ops@example.com"}
    assert "pki" not in prod["apps"] and "certificates" not in prod["apps"]["tls"]
    # The app names come one by one, on demand: ACME gives no wildcard without a DNS challenge.
    assert prod["apps"]["http"]["servers"]["edge"]["automatic_https"] == {"skip_certificates": [f"*.{D}"]}
    assert "automatic_https" not in dev["apps"]["http"]["servers"]["edge"]


def test_production_edge_gets_certificates_on_demand_after_asking_and_logs_them():
    settings = edge_config.EdgeSettings("/s", "/d", acme_directory="https://ca.example/dir",
                                        acme_ca_root="/etc/ca.pem", ask_url="http://127.0.0.1:4000/",
                                        cert_log="/d/certificates.log")
    tls = edge_config.render(EdgeRoutes.build(D, ["blog"], ["100.96.0.5:7080"]), settings)["apps"]["tls"]
    (policy,) = tls["automation"]["policies"]
    assert policy["on_demand"] is True
    assert policy["issuers"] == [{"module": "acme", "ca": "https://ca.example/dir",
                                  "trusted_roots_pem_files": ["/etc/ca.pem"]}]
    assert tls["automation"]["on_demand"] == {"permission": {"module": "http", "endpoint": "http://127.0.0.1:4000/"}}
    logs = edge_config.render(EdgeRoutes.build(D), settings)["logging"]["logs"]
    assert logs["certificates"]["writer"]["filename"] == "/d/certificates.log"
    assert set(logs["certificates"]["include"]) == set(edge_config.CERT_LOGGERS)


def test_edge_without_live_nodes_answers_503_page():
    doc = edge_config.render(EdgeRoutes.build(D, ["blog"], []), EDGE)
    (page,) = handlers_for(doc, "edge", f"blog.{D}")
    assert page["status_code"] == 503 and "No machine is serving" in page["body"]


def page_and_proxy(handlers: list[dict]) -> tuple[dict, dict]:
    """The app's "not running" page (read from its file while the file is there) and its proxy."""
    (subroute,) = [h for h in handlers if h["handler"] == "subroute"]
    page_route, proxy_route = subroute["routes"]
    assert page_route["terminal"] and "match" not in proxy_route
    (page,) = page_route["handle"]
    return page_route["match"][0]["file"] | {"page": page}, proxy_route["handle"][-1]


def test_node_router_checks_tokens_only_for_token_apps():
    routes = NodeRoutes.build(D, {
        "blog": AppRoute(("10.0.0.1:9001", "100.96.0.6:9001"), "public"),
        "vault": AppRoute(("10.0.0.1:9002",), "token", ("vault.example.org",)),
    })
    doc = node_config.render(routes, NODE)
    blog = handlers_for(doc, "node", f"blog.{D}")
    assert [h["handler"] for h in blog] == ["headers", "headers", "subroute"]
    assert blog[0]["request"]["delete"] == [node_config.TOKEN_ID_HEADER, node_config.TOKEN_NAME_HEADER]
    _, proxy = page_and_proxy(blog)
    # An app's instances: one slow connect (a dropped SYN) is not a death, and a burst of them
    # rests the only instance for a moment, not for a node router's 10 s.
    assert proxy["health_checks"]["passive"]["max_fails"] == caddyjson.BACKEND_MAX_FAILS > 1
    assert proxy["health_checks"]["passive"]["fail_duration"] == caddyjson.BACKEND_FAIL_DURATION == "2s"
    assert "active" not in proxy["health_checks"]  # the answers name serving instances only
    vault = handlers_for(doc, "node", "vault.example.org")
    assert vault == handlers_for(doc, "node", f"vault.{D}")
    assert [h["handler"] for h in vault] == ["headers", "reverse_proxy", "headers", "subroute"]
    auth = vault[1]
    assert auth["upstreams"] == [{"dial": "unix//run/n/auth.sock"}]
    assert auth["rewrite"] == {"method": "GET", "uri": "/check?app=vault"}


def test_the_app_never_sees_the_visitors_vcapp_credential():
    import re

    doc = node_config.render(NodeRoutes.build(D, {"vault": AppRoute(("10.0.0.1:9002",), "token")}), NODE)
    _, auth, cookie, _ = handlers_for(doc, "node", f"vault.{D}")
    bearer, any_token = auth["handle_response"]
    # A bearer token is taken off the request; id and name are passed instead.
    assert bearer["match"]["headers"] == {node_config.TOKEN_VIA_HEADER: ["bearer"]}
    assert {"handler": "headers", "request": {"delete": ["Authorization"]}} in bearer["routes"][0]["handle"]
    copied = any_token["routes"][0]["handle"][0]["request"]["set"]
    assert set(copied) == {node_config.TOKEN_ID_HEADER, node_config.TOKEN_NAME_HEADER}
    # The session cookie goes, the app's own cookies stay (Go's RE2 reads this pattern alike).
    (rule,) = cookie["request"]["replace"]["Cookie"]
    strip = lambda header: re.sub(rule["search_regexp"], rule["replace"], header)  # noqa: E731
    assert strip("__Host-vcapp-session=abc.def") == ""
    assert strip("theme=dark; __Host-vcapp-session=abc; lang=en") == "theme=dark; lang=en"
    assert strip("theme=dark") == "theme=dark"


def test_an_apps_proxy_asks_the_routers_answers_and_names_no_instance():
    doc = node_config.render(NodeRoutes.build(D, {"blog": AppRoute(("127.0.0.1:20001",), local=("127.0.0.1:20001",))}),
                             replace(NODE, hop_listen="100.96.0.5:7081"))
    for server in ("node", "hop"):
        page, proxy = page_and_proxy(handlers_for(doc, server, f"blog.{D}"))
        assert "upstreams" not in proxy
        source = proxy["dynamic_upstreams"]
        assert source["source"] == "srv" and source["name"] == f"blog.{server}.routes.vcapp.invalid."
        assert source["resolver"] == proxy["transport"]["resolver"] == {"addresses": ["udp/127.0.0.1:5353"]}
        assert source["refresh"] == "1s" and source["grace_period"] == node_config.STALE_ANSWERS_FOR
        assert page["root"] == "/var/lib/n/pages" and page["try_files"] == [f"/{server}/blog.html"]
        assert page["page"]["status_code"] == 503
        assert page["page"]["body"] == f"{{file./var/lib/n/pages/{server}/blog.html}}"


def test_deploys_moves_health_and_down_reasons_leave_the_node_config_as_it_is():
    hop = replace(NODE, hop_listen="100.96.0.5:7081")
    machines = ["100.96.0.5", "100.96.0.6"]
    here = AppRoute(("127.0.0.1:20001", "100.96.0.6:7081"), local=("127.0.0.1:20001",))
    before = node_config.render(NodeRoutes.build(D, {"blog": here, "shop": AppRoute()}, machines=machines), hop)
    for blog, shop in [
        (replace(here, backends=("127.0.0.1:20002",), local=("127.0.0.1:20002",), retiring=("127.0.0.1:20001",)),
         AppRoute(("100.96.0.6:7081",))),  # a deploy here, shop started elsewhere
        (AppRoute(("100.96.0.6:7081",)), AppRoute(down="crashed", down_detail="see vcapp ps shop")),  # a move
        (AppRoute(down="unhealthy"), AppRoute(down="stopped")),
    ]:
        after = NodeRoutes.build(D, {"blog": blog, "shop": shop}, machines=machines, down=["100.96.0.6"])
        assert node_config.render(after, hop) == before
    # what does change it: a new app, a policy, a custom domain, the machines
    for changed in [NodeRoutes.build(D, {"blog": here}, machines=machines),
                    NodeRoutes.build(D, {"blog": replace(here, policy="token"), "shop": AppRoute()}, machines=machines),
                    NodeRoutes.build(D, {"blog": replace(here, domains=("blog.org",)), "shop": AppRoute()},
                                     machines=machines),
                    NodeRoutes.build(D, {"blog": here, "shop": AppRoute()}, machines=machines[:1])]:
        assert node_config.render(changed, hop) != before


def test_other_machines_reach_an_apps_local_instances_only_through_the_hop_server():
    hop = replace(NODE, hop_listen="100.96.0.5:7081")
    routes = NodeRoutes.build(D, {"blog": AppRoute(("127.0.0.1:20001", "100.96.0.6:7081"), "token",
                                                   local=("127.0.0.1:20001",)),
                                  "shop": AppRoute(("100.96.0.6:7081",))},
                              machines=["100.96.0.5", "100.96.0.6"])
    doc = node_config.render(routes, hop)
    server = doc["apps"]["http"]["servers"]["hop"]
    assert server["listen"] == ["100.96.0.5:7081"]
    refuse = server["routes"][0]
    assert refuse["match"] == [{"not": [{"remote_ip": {"ranges": ["100.96.0.5", "100.96.0.6"]}}]}]
    assert refuse["handle"][0]["status_code"] == 403
    # Only this machine's instances, no second hop; the sending router checked the token.
    assert [h["handler"] for h in handlers_for(doc, "hop", f"blog.{D}")] == ["subroute"]
    srv = node_dns.answers(routes)["srv"]
    assert srv["blog.hop"] == [[20001, "ip-127-0-0-1"]]
    assert "shop.hop" not in srv  # no instance here: its page
    # No machines known: the hop server refuses everyone.
    lonely = node_config.render(NodeRoutes.build(D, {"shop": AppRoute()}), hop)
    assert "match" not in lonely["apps"]["http"]["servers"]["hop"]["routes"][0]
    assert "hop" not in node_config.render(routes, NODE)["apps"]["http"]["servers"]


def test_a_container_leaving_the_machine_is_served_by_the_hop_only_until_its_switch_closes():
    # blog's last instance here is leaving (its report is gone): the node server sends to the
    # other machine, the hop still answers the routers that have not switched yet.
    leaving = AppRoute(("100.96.0.6:7081",), "public", retiring=("127.0.0.1:20001",))
    srv = node_dns.answers(NodeRoutes.build(D, {"blog": leaving}))["srv"]
    assert srv == {"blog.node": [[7081, "ip-100-96-0-6"]], "blog.hop": [[20001, "ip-127-0-0-1"]]}
    # beside an instance that stays: both, once each
    both = replace(leaving, backends=("127.0.0.1:20002", "100.96.0.6:7081"), local=("127.0.0.1:20002",),
                   retiring=("127.0.0.1:20001", "127.0.0.1:20002"))
    srv = node_dns.answers(NodeRoutes.build(D, {"blog": both}))["srv"]
    assert srv["blog.hop"] == [[20002, "ip-127-0-0-1"], [20001, "ip-127-0-0-1"]]
    with pytest.raises(RoutesError, match="IPv4 address and port"):
        AppRoute(retiring=("nowhere",))
    with pytest.raises(RoutesError, match="IPv4 address and port"):
        AppRoute(("blog.internal:80",))


def test_node_router_trusts_the_edges_and_answers_health_and_unknown_hosts():
    doc = node_config.render(NodeRoutes.build(D, {"blog": AppRoute()}, api=["127.0.0.1:8000"],
                                              trusted_proxies=["100.96.0.1/32"]), NODE)
    server = doc["apps"]["http"]["servers"]["node"]
    assert server["trusted_proxies"] == {"source": "static", "ranges": ["100.96.0.1/32"]}
    assert server["listen"] == ["100.96.0.5:7080"]
    health = server["routes"][0]
    assert health["match"][0]["host"] == [caddyjson.NODE_HEALTH_HOST]
    assert handlers_for(doc, "node", f"api.{D}")[0]["upstreams"] == [{"dial": "127.0.0.1:8000"}]
    assert server["routes"][-1]["handle"][0]["status_code"] == 404


def health_answer(doc: dict, path: str) -> int:
    """What a node router's health host answers at `path` (routes are tried in order)."""
    for route in doc["apps"]["http"]["servers"]["node"]["routes"]:
        (match,) = route["match"]
        if caddyjson.NODE_HEALTH_HOST in match.get("host", []):
            paths = match.get("path")
            if paths is None or path in paths or any(p.endswith("*") and path.startswith(p[:-1]) for p in paths):
                return route["handle"][-1]["status_code"]
    raise AssertionError(f"the health host does not answer {path}")


def test_node_router_tells_the_edges_it_is_up_and_nothing_else():
    apps = {"blog": AppRoute(("10.0.0.1:9001",), local=("10.0.0.1:9001",)), "idle": AppRoute()}
    doc = node_config.render(NodeRoutes.build(D, apps), NODE)
    assert health_answer(doc, caddyjson.NODE_HEALTH_PATH) == 200
    assert health_answer(doc, "/.vcapp/serves/blog") == 404


def test_node_router_keeps_requests_on_its_own_machines_instances():
    both = AppRoute(("10.0.0.1:9001", "10.0.0.2:9001", "10.0.0.3:9001"), local=("10.0.0.2:9001", "10.0.0.3:9001"))
    assert node_dns.answers(NodeRoutes.build(D, {"blog": both}))["srv"]["blog.node"] == [
        [9001, "ip-10-0-0-2"], [9001, "ip-10-0-0-3"]]
    elsewhere = replace(both, local=())
    assert node_dns.answers(NodeRoutes.build(D, {"blog": elsewhere}))["srv"]["blog.node"] == [
        [9001, "ip-10-0-0-1"], [9001, "ip-10-0-0-2"], [9001, "ip-10-0-0-3"]]
    with pytest.raises(RoutesError, match="not backends"):
        AppRoute(("10.0.0.1:9001",), local=("10.0.0.9:9001",))


def test_bad_routes_are_refused_with_what_to_fix():
    with pytest.raises(RoutesError, match="DNS label"):
        EdgeRoutes.build(D, ["Blog_1"])
    with pytest.raises(RoutesError, match="host:port"):
        EdgeRoutes.build(D, ["blog"], ["100.96.0.5"])
    with pytest.raises(RoutesError, match="add the app first"):
        EdgeRoutes.build(D, ["blog"], [], {"shop": ["www.shop.org"]})
    with pytest.raises(RoutesError, match="taken by the cluster API"):
        NodeRoutes.build(D, {"api": AppRoute()})
    with pytest.raises(RoutesError, match="access policy"):
        AppRoute(policy="secret")


def test_tables_built_in_any_order_are_equal():
    a = EdgeRoutes.build(D, ["b", "a"], ["n2:1", "n1:1"], {"a": ["y.org", "x.org"]})
    b = EdgeRoutes.build(D, ["a", "b"], ["n1:1", "n2:1"], {"a": ["x.org", "y.org"]})
    assert a == b and edge_config.render(a, EDGE) == edge_config.render(b, EDGE)


class FakeAdmin:
    """Records loads; config() returns what was last loaded (as Caddy's GET /config/ does)."""

    def __init__(self):
        self.loaded: list[dict] = []

    def config(self) -> dict:
        return json.loads(json.dumps(self.loaded[-1])) if self.loaded else {}

    def load(self, doc: dict) -> None:
        self.loaded.append(doc)


def test_controller_loads_only_when_the_desired_config_differs():
    admin = FakeAdmin()
    ctl = ConfigSync(admin, lambda r: edge_config.render(r, EDGE))
    one = EdgeRoutes.build(D, ["blog"], ["n1:7080"])
    assert ctl.apply(one) is True
    assert ctl.apply(EdgeRoutes.build(D, ["blog"], ["n1:7080"])) is False
    assert ctl.apply(EdgeRoutes.build(D, ["blog"], ["n1:7080", "n2:7080"])) is True
    admin.loaded.append({})  # Caddy restarted and lost its config
    assert ctl.apply(one) is True and len(admin.loaded) == 4


class SwitchingAdmin:
    """Caddy's admin API just after a load: the first answers still come from the bootstrap
    config, whose default internal CA signs nothing the edge serves."""

    def __init__(self, answers: list[dict]):
        self.answers = answers

    def request(self, method: str, path: str):
        assert (method, path) == ("GET", "/pki/ca/local")
        return 200, json.dumps(self.answers.pop(0) if len(self.answers) > 1 else self.answers[0])


def test_the_dev_ca_given_to_clients_is_the_one_that_signs_the_edges_sites(tmp_path, monkeypatch):
    edge = Edge(tmp_path, dev=True)
    stale = {"name": "Caddy Local Authority", "root_certificate": "DEFAULT ROOT"}
    ours = {"name": edge_config.DEV_CA_NAME, "root_certificate": "EDGE ROOT", "intermediate_certificate": "I"}
    monkeypatch.setattr(CaddyProcess, "admin", SwitchingAdmin([stale, stale, ours]))
    assert edge.root_ca_pem() == "EDGE ROOT"
    assert edge_config.render(EdgeRoutes.build(D, ["blog"], ["n1:7080"]), EDGE)[
        "apps"]["pki"]["certificate_authorities"]["local"]["name"] == edge_config.DEV_CA_NAME


@pytest.mark.parametrize("down, detail, title, words", [
    (None, "", "blog is not running", "it should be back within a minute"),
    ("undeployed", "To deploy it, push its code: git push https://api.apps.example.com/git/blog.git main",
     "blog is not deployed yet", "git push https://api.apps.example.com/git/blog.git main"),
    ("build-failed", "Build 2 (889e2a5) failed: <b>oops</b>. Its log: vcapp builds log blog", "blog is not running",
     "Its last build failed, and it has never been deployed. Build 2 (889e2a5) failed: &lt;b&gt;oops&lt;/b&gt;. "
     "Its log: vcapp builds log blog"),
    ("crashed", "Instance 0: exited with code 3", "blog is not running", "Its instances crashed. Instance 0: exited"),
    ("unhealthy", "Instance 0: HTTP 500 from /healthz", "blog is not answering", "failing their health check"),
    ("no-room", "Instance 0: no machine has 512 MB free", "blog is not running", "No machine has room to run it."),
    ("stopped", "To start it: vcapp scale blog --count 1", "blog is stopped", "vcapp scale blog --count 1"),
    ("deploying", "", "blog is being deployed", "try again in a minute"),
])
def test_the_not_running_page_says_why_escaped(down, detail, title, words):
    app = AppRoute(down=down, down_detail=detail)
    page = node_config.not_running_page("blog", app)
    assert f"<title>{title}</title>" in page and words in page, page
    assert "<b>" not in page
    assert node_dns.answers(NodeRoutes.build(D, {"blog": app})) == {"srv": {}}  # its page, on both servers


def test_a_down_reason_must_be_known_and_short():
    with pytest.raises(RoutesError, match="down reason 'gone'"):
        AppRoute(down="gone")
    with pytest.raises(RoutesError, match="at most 300"):
        AppRoute(down="crashed", down_detail="x" * 301)


def test_access_lines_go_to_their_own_file_without_headers_or_the_token():
    doc = node_config.render(NodeRoutes.build(D, {"blog": AppRoute(("127.0.0.1:20001",), local=("127.0.0.1:20001",))}),
                             replace(NODE, hop_listen="100.96.0.5:7081", access_log="/var/lib/n/access.log"))
    servers = doc["apps"]["http"]["servers"]
    assert servers["node"]["logs"] == {"default_logger_name": "node"}
    assert servers["hop"]["logs"] == {"default_logger_name": "hop"}
    access = doc["logging"]["logs"]["access"]
    assert access["writer"]["filename"] == "/var/lib/n/access.log" and access["writer"]["roll_size_mb"] > 0
    assert access["include"] == ["http.log.access"]
    assert doc["logging"]["logs"]["default"]["exclude"] == ["http.log.access"]
    fields = access["encoder"]["fields"]
    assert fields["request>headers"] == {"filter": "delete"} and fields["resp_headers"] == {"filter": "delete"}
    assert fields["request>uri"]["actions"] == [{"type": "delete", "parameter": "token"}]
    # the edges' health checks, every second, are not access lines
    health = [r for r in servers["node"]["routes"]
              if caddyjson.NODE_HEALTH_HOST in (r.get("match") or [{}])[0].get("host", [])]
    assert health and all(r["handle"][0] == {"handler": "vars", "log_skip": True} for r in health)
    assert "logging" not in node_config.render(NodeRoutes.build(D, {}), NODE)
