"""Issue 7 on the real cluster: mesh, edge, node routers and the runtime together.

A make_sim(home=2, office=1) cluster gets vcapp the way `vcapp dev up` installs it
(platform.install: node daemons, the mesh with its edge, `vcapp edge run --dev`). Apps are
the tiny busybox image run by the runtime in podman; the client host on the backbone reaches
them only through the edge at https://APP.apps.test, trusting the edge's dev CA, as a user
would. A git-pushed app (a Dockerfile FROM the tiny image) is redeployed by a second push
and rolled back; those, restarts, secret changes, a scale-down and a drain run under an
open-loop client through the edge and lose no request (issue 16: a retired container leaves
the routers before it stops, then drains). One
machine is powered off last: it runs an instance of a two-instance app (which must keep
answering) and the only instance of another app (which must answer again elsewhere).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.baseimage import TINY_IMAGE, tiny_build_command, tiny_context, tiny_web_dockerfile
from tests.deploy.test_git_push_deploy import commit, git
from tests.helpers import openloop
from tests.helpers.browser import screenshot, spki_sha256
from tests.ingress.diagnose import edge_report
from vcapp.dev import netns, platform
from vcapp.dev.rigs.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

DOMAIN = platform.DOMAIN
DUO, SOLO, PUSHED = "duo", "solo", "pushed"
# The git-pushed app: a Dockerfile on the tiny image (on every machine, never pulled), a page
# naming the version, an HTTP check, held to the office site so the home machines' drain and
# kill leave it be.
PUSHED_TOML = '[health]\npath = "/"\n'
PUSH_TIMEOUT = 300.0  # a Dockerfile of one RUN on a local image: seconds; minutes on a loaded host
# A push builds, pushes to the registry, and the office machine pulls and starts the release:
# ~5 s on an idle host, many times that on a loaded one, so its loop runs longer.
PUSH_SECONDS = 120.0
# A busybox web server whose page names the app and the instance (its container hostname).
SERVE = ('mkdir -p /www && echo "<html><body><h1>Hello from {app}</h1><p>served by instance $HOSTNAME</p>'
         '</body></html>" > /www/index.html && exec httpd -f -p 8080 -h /www')
# The benchmark's client program: an open loop (requests leave on a fixed schedule whatever the
# latency on a loaded host), keep-alive connections reopened after a failure, 5 s timeout.
LOADCLIENT = str(Path(__file__).resolve().parents[2] / "bench" / "ingress_bench.py")
# Placement + podman create + first health check: ~15 s; on the shared 2-core host at load
# average 60 it has taken over 90 s, so 180 s before calling it broken.
PLACE_WAIT = 180.0
# The edge polls its table every second (vcapp/edge/daemon.py): a new app answers within seconds.
ROUTE_WAIT = 30.0
# Issue 7's steady loop: 20 requests/s for 25 s, the machine killed 8 s in.
LOAD_SECONDS, LOAD_INTERVAL, KILL_AT = 25.0, 0.05, 8.0
# Issue 7: <= 1 % of requests fail and none 5 s after the kill.
MAX_FAILED_SHARE, QUIET_AFTER = 0.01, 5.0
# DESIGN.md: the runtime's failover target is 15 s median; issue 7 allows it + 2 s.
FAILOVER_TARGET = 15.0 + 2.0
SOLO_POLL = 0.25  # s between the single-instance app's probes after the kill
# Issue 16: an operation that replaces or retires containers, 3 s into an open loop at 15 req/s,
# loses none. A replace takes ~5 s on an idle host (placement, start, first check, switch) and
# took 30 s once with the 2 cores shared by three other clusters: the loop may run 40 s. It
# stops SWITCH_AFTER s after the operation is done (the old container's SIGTERM and drain
# fall in that time), and never before ISSUE_REQUESTS requests (issue 16: at least 250).
SWITCH_SECONDS, SWITCH_RATE, SWITCH_AT, SWITCH_AFTER, ISSUE_REQUESTS = 40.0, 15.0, 3.0, 12.0, 250
# Chromium renders one small page in seconds; 90 s means it hung.
BROWSER_TIMEOUT = 90
MIN_PNG_BYTES = 3000  # a blank 900x600 PNG is ~2 KB; text makes it bigger
LAST_CURL_ERROR: list[str] = []
CLUSTER: list = []  # the module's cluster, for failure reports


class Cluster:
    """The installed cluster as the admin (on a machine) and the user (on the client) see it."""

    def __init__(self, sim, found: platform.Platform):
        self.sim, self.found = sim, found
        self.ca = str(platform.edge_ca(sim.dc))
        self.edge_addr = sim.addr("edge")
        CLUSTER[:] = [self]

    def vcapp(self, host: str, *args: str) -> str:
        return self.sim.run(host, "vcapp", *args, timeout=60).stdout

    def curl(self, app: str, *args: str, timeout: float = 5) -> tuple[str, str]:
        """(status, body) of GET https://APP.apps.test/ from the client host through the edge."""
        host = f"{app}.{DOMAIN}"
        out = self.sim.fetch(f"https://{host}/", "--cacert", self.ca, "--resolve", f"{host}:443:{self.edge_addr}",
                             "-w", "\n%{http_code}", *args, timeout=timeout)
        body, _, status = out.stdout.rpartition("\n")
        if status != "200":  # what curl said (a TLS error names the certificate problem), for failure messages
            LAST_CURL_ERROR[:] = [f"{host}: HTTP {status or '-'} {out.stderr.strip()[-300:]}"]
        return status, body

    def healthy(self, app: str, on: str) -> list[dict]:
        proc = self.sim.run(on, "vcapp", "ps", app, "--json", check=False, timeout=30)
        rows = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else []
        return [r for r in rows if r["state"] == "running" and r["health"] == "healthy"]


def wait(what: str, fn, timeout: float, interval: float = 0.5):
    def report() -> str:
        return f"last failed request: {LAST_CURL_ERROR}" + (edge_report(
            CLUSTER[0].sim, f"{DUO}.{DOMAIN}", CLUSTER[0].ca,
            CLUSTER[0].sim.dc.host_dir("edge") / "log" / f"{platform.INGRESS_SERVICE}.log") if CLUSTER else "")
    return wait_for(fn, timeout, what, interval, detail=report)


@pytest.fixture(scope="module")
def cl(make_sim, tmp_path_factory):
    sim = make_sim(home=2, office=1)
    ctx = tiny_context(tmp_path_factory.mktemp("tiny"))
    for m in sim.topology.machines():
        sim.run(m.name, *tiny_build_command(ctx), timeout=300)
    cl = Cluster(sim, platform.install(sim.dc, say=lambda line: None))
    # Both apps are held to the home site, so the one that runs alone always shares a machine
    # with the two-instance app (one kill tests both) and has the other home machine to go to.
    for app, count in ((DUO, 2), (SOLO, 1)):
        cl.vcapp("home-1", "apps", "create", app, "--image", TINY_IMAGE, "--port", "8080", "--command",
                 SERVE.format(app=app), "--health-path", "/", "--count", str(count), "--memory", "64M",
                 "--constraint", "site=home")
    return cl


def test_app_page_through_the_edge_and_no_port_forward_at_any_site(cl):
    rows = wait("two healthy duo instances on two machines",
                lambda: (r := cl.healthy(DUO, "home-1")) and len({x["node"] for x in r}) == 2 and r, PLACE_WAIT)
    assert {r["node"] for r in rows} == {"home-1", "home-2"}
    # Every node router learns the new app within a second or so; the edge spreads requests
    # over all of them, so wait until a run of requests all succeed.
    wait("duo's page through the edge via every node router",
         lambda: all(cl.curl(DUO)[0] == "200" for _ in range(6)), ROUTE_WAIT)
    served = set()
    for _ in range(10):
        status, body = cl.curl(DUO)
        assert status == "200" and "<h1>Hello from duo</h1>" in body
        served.add(body.split("served by instance ")[1].split("<")[0])
    print(f"\nduo served by {sorted(served)}")
    for site in cl.sim.topology.sites:
        nat = netns.iptables(cl.sim.topology.ns(site.name), "-t", "nat", "-S").stdout
        assert "DNAT" not in nat and "REDIRECT" not in nat, f"{site.name} router forwards a port:\n{nat}"


def test_browser_on_the_client_loads_the_app_page(cl, artifacts, tmp_path):
    wait("solo's page through the edge", lambda: cl.curl(SOLO)[0] == "200", PLACE_WAIT + ROUTE_WAIT)
    intermediate = Path(cl.ca).parent / "caddy" / "data" / "pki" / "authorities" / "local" / "intermediate.crt"
    data = screenshot(cl.sim, "client", f"https://{SOLO}.{DOMAIN}/", artifacts / "edge_cluster_browser.png",
                      tmp_path / "profile", f"MAP *.{DOMAIN} {cl.edge_addr}", spki_sha256(intermediate.read_text()),
                      BROWSER_TIMEOUT)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > MIN_PNG_BYTES, f"{len(data)} bytes"


def containers(cl, app: str) -> set[str]:
    return {r["container"] for r in cl.healthy(app, "home-1")}


def lose_nothing_while(cl, app: str | tuple[str, ...], what: str, act, done,
                       seconds: float = SWITCH_SECONDS) -> None:
    """Run `act` SWITCH_AT s into an open loop on each app; `done()` must hold before the
    loops end (the operation really happened under load), and no request may fail."""
    loads = {a: openloop.start(cl.sim.dc, "client", openloop.Target(cl.edge_addr, 443, f"{a}.{DOMAIN}", cl.ca),
                               SWITCH_RATE, seconds) for a in ((app,) if isinstance(app, str) else app)}
    started = time.monotonic()
    time.sleep(SWITCH_AT)
    act()
    finished = None
    while time.monotonic() - started < seconds - 1:
        if done():
            finished = round(time.monotonic() - started - SWITCH_AT, 1)
            break
        time.sleep(0.5)
    if finished is not None:
        end = max(SWITCH_AT + finished + SWITCH_AFTER, ISSUE_REQUESTS / SWITCH_RATE + 1)
        time.sleep(max(0.0, end - (time.monotonic() - started)))
        for load in loads.values():
            openloop.stop(load)
    for name, load in loads.items():
        results = openloop.outcomes(load, seconds)
        failed = openloop.failures(results)
        print(f"\n{what}: done {finished}s after it began; {name}: {len(failed)} of {len(results)} requests "
              f"failed {failed}")
        assert len(results) >= ISSUE_REQUESTS, f"the request loop sent {len(results)} requests, not {ISSUE_REQUESTS}"
        assert not failed, f"{what}: {name}: {len(failed)} of {len(results)} requests failed: {failed}"
    assert finished is not None and finished + SWITCH_AT <= seconds, \
        f"{what} did not finish within the {seconds:.0f}s loop (done after {finished}s)"


def test_a_restart_loses_no_request(cl):
    before = wait("solo healthy", lambda: containers(cl, SOLO), PLACE_WAIT)
    lose_nothing_while(cl, SOLO, "vcapp restart solo", lambda: cl.vcapp("home-1", "restart", SOLO),
                       lambda: (now := containers(cl, SOLO)) and not now & before)


def test_a_secret_change_loses_no_request(cl):
    before = wait("solo healthy", lambda: containers(cl, SOLO), PLACE_WAIT)
    lose_nothing_while(cl, SOLO, "vcapp secrets set", lambda: cl.vcapp("home-1", "secrets", "set", SOLO, "GREETING=hi"),
                       lambda: (now := containers(cl, SOLO)) and not now & before)


def test_a_scale_down_loses_no_request(cl):
    cl.vcapp("home-1", "scale", SOLO, "--count", "2")
    two = wait("two healthy solo instances", lambda: len(r := containers(cl, SOLO)) == 2 and r, PLACE_WAIT)
    lose_nothing_while(cl, SOLO, "vcapp scale solo --count 1", lambda: cl.vcapp("home-1", "scale", SOLO, "--count", "1"),
                       lambda: len(now := containers(cl, SOLO)) == 1 and now < two)


def push_version(cl, repo: Path, version: str) -> None:
    """Commit `version` of the pushed app and `git push` it from the first machine, where
    `cluster init` logged the admin in (git asks `vcapp git-credential`)."""
    commit(repo, {"Dockerfile": tiny_web_dockerfile(f"{PUSHED} {version}"), "vcapp.toml": PUSHED_TOML}, version)
    remote = f"{cl.found.api_url}/git/{PUSHED}.git"
    proc = cl.sim.run(cl.found.first, "git", "-C", str(repo), "push", remote, "main", check=False,
                      timeout=PUSH_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-2000:]


def serves(cl, app: str, text: str) -> bool:
    status, body = cl.curl(app)
    return status == "200" and text in body


@pytest.fixture(scope="module")
def pushed(cl, tmp_path_factory) -> Path:
    """The pushed app at v1, answering through the edge; its repository on the admin's disk."""
    cl.vcapp("home-1", "apps", "create", PUSHED, "--memory", "64M", "--constraint", "site=office")
    repo = tmp_path_factory.mktemp("laptop") / PUSHED
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    push_version(cl, repo, "v1")
    wait("pushed v1 through the edge", lambda: serves(cl, PUSHED, "pushed v1"), PLACE_WAIT + ROUTE_WAIT)
    return repo


def test_a_git_push_of_a_new_release_loses_no_request(cl, pushed):
    before = wait("pushed healthy", lambda: containers(cl, PUSHED), PLACE_WAIT)
    lose_nothing_while(cl, PUSHED, "git push of v2", lambda: push_version(cl, pushed, "v2"),
                       lambda: (now := containers(cl, PUSHED)) and not now & before, seconds=PUSH_SECONDS)
    assert serves(cl, PUSHED, "pushed v2")


def test_a_rollback_loses_no_request(cl, pushed):
    before = wait("pushed v2 healthy", lambda: serves(cl, PUSHED, "pushed v2") and containers(cl, PUSHED), PLACE_WAIT)
    out: list[str] = []
    lose_nothing_while(cl, PUSHED, f"vcapp rollback {PUSHED} 1",
                       lambda: out.append(cl.vcapp("home-1", "rollback", PUSHED, "1")),
                       lambda: (now := containers(cl, PUSHED)) and not now & before)
    assert "rolled back from v2 to v1's code as v3" in out[0]
    assert serves(cl, PUSHED, "pushed v1")


def test_a_drain_moves_every_instance_off_without_losing_a_request_and_undrain_takes_it_back(cl):
    drained = wait("solo healthy", lambda: cl.healthy(SOLO, "home-1"), PLACE_WAIT)[0]["node"]
    other = next(m for m in ("home-1", "home-2") if m != drained)
    wait("duo on both home machines", lambda: {r["node"] for r in cl.healthy(DUO, other)} == {"home-1", "home-2"},
         PLACE_WAIT)

    def all_on_other() -> bool:
        rows = cl.healthy(SOLO, other) + cl.healthy(DUO, other)
        return len(rows) == 3 and {r["node"] for r in rows} == {other}

    lose_nothing_while(cl, (SOLO, DUO), f"vcapp node drain {drained}",
                       lambda: cl.vcapp(other, "node", "drain", drained), all_on_other)
    nodes = {n["name"]: n for n in json.loads(cl.vcapp(other, "nodes", "--json"))}
    assert nodes[drained]["drained"] and nodes[drained]["up"] and not nodes[other]["drained"]
    assert f"{drained}" in cl.vcapp(other, "status") and "drained" in cl.vcapp(other, "status")
    time.sleep(3)
    assert all_on_other(), "an instance went back to the drained machine"
    assert "takes instances again" in cl.vcapp(other, "node", "undrain", drained)
    # duo spreads over both machines again (placer rule: crowded instances respread)
    wait("duo on both home machines again", lambda: {r["node"] for r in cl.healthy(DUO, other)} == {"home-1", "home-2"},
         PLACE_WAIT)


def test_killed_machine_costs_the_two_instance_app_almost_nothing_and_the_single_one_moves(cl, record_property):
    solo = wait("solo healthy", lambda: cl.healthy(SOLO, "home-1"), PLACE_WAIT)[0]
    victim = solo["node"]
    survivor = next(m for m in ("home-1", "home-2") if m != victim)
    assert victim in {r["node"] for r in cl.healthy(DUO, survivor)}
    target = {"addr": cl.edge_addr, "port": 443, "host": f"{DUO}.{DOMAIN}", "ca": cl.ca}
    load = cl.sim.dc.spawn("client", [sys.executable, LOADCLIENT, "client", json.dumps(target), "open",
                                      str(1 / LOAD_INTERVAL), str(LOAD_SECONDS)], stdout=subprocess.PIPE, text=True)
    assert load.stdout.readline().strip() == "ready"
    started = time.monotonic()
    time.sleep(KILL_AT)  # a steady loop before the power-off
    killed_at = time.monotonic() - started - 0.2  # the client's schedule starts 0.2 s after "ready"
    cl.sim.dc.kill(victim)
    killed = time.monotonic()
    # The single-instance app, probed from the client host until it answers again.
    while True:
        status, body = cl.curl(SOLO, timeout=2)
        back = time.monotonic() - killed
        if (status == "200" and "Hello from solo" in body) or back > FAILOVER_TARGET + 30:
            break
        time.sleep(SOLO_POLL)
    out, _ = load.communicate(timeout=LOAD_SECONDS + 60)
    results = [(t, r) for t, r, _ in (json.loads(line) for line in out.splitlines())]
    failed = [(round(t, 2), r) for t, r in results if not r.startswith("200")]
    record_property("solo_failover_s", round(back, 2))
    record_property("duo_failed", f"{len(failed)}/{len(results)}")
    print(f"\nkilled {victim}: duo {len(failed)} of {len(results)} requests failed {failed}; "
          f"solo answering again after {back:.2f}s")
    assert len(results) == int(LOAD_SECONDS / LOAD_INTERVAL), "the request loop did not run steadily"
    assert len(failed) <= MAX_FAILED_SHARE * len(results), f"{len(failed)} of {len(results)} failed: {failed}"
    assert all(t < killed_at + QUIET_AFTER for t, _ in failed), failed
    assert back <= FAILOVER_TARGET, f"solo answered again only after {back:.1f}s"
    moved = cl.healthy(SOLO, survivor)
    assert [r["node"] for r in moved] == [survivor]
