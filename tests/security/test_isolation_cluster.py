"""Issue 15, as an attacker sees it on a cluster over the mesh (two sites, an edge): from
inside an app's container, from a build step and from the edge, nothing of the control plane
answers; a token app is reached only through a node router, which checks the token and never
hands it to the app.

Three machines (home-1, home-2 at home, office-1 at the office) run the real node daemons; the
edge host runs the mesh's edge. Apps are the tiny busybox image built on each machine.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess

import pytest

from builder.baseimage import TINY_IMAGE, tiny_build_command, tiny_context
from tests.control.conftest import ControlCluster

pytestmark = pytest.mark.cluster

MACHINES = ["home-1", "home-2", "office-1"]
EDGE_MESH = "100.96.0.1"
UP_TIMEOUT = 120.0  # three daemons, etcd over the mesh, on a loaded 2-core host
PLACE_WAIT_S = 90.0
# etcd (client, peer), the API, the registry, the node router and its hop port, the storage
# master and filer: what a container must not reach on any machine.
CONTROL_PORTS = (2379, 2380, 7180, 5000, 7080, 7081, 9333, 8888)
# An app that answers every request with the request's head, so a test sees what the app got.
ECHO_SCRIPT = """#!/bin/sh
h="" cr=$(printf '\\r')
while IFS= read -r line; do line=${line%"$cr"}; [ -z "$line" ] && break; h="$h$line
"; done
printf 'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: %s\\r\\n\\r\\n%s' "${#h}" "$h"
"""
ECHO = (f"echo {base64.b64encode(ECHO_SCRIPT.encode()).decode()} | base64 -d > /echo.sh && chmod +x /echo.sh && "
        "exec nc -ll -p 8080 -e /echo.sh")
# A shell loop that tries each HOST:PORT given and says REACHED or BLOCKED for it.
PROBE = ('for t in {targets}; do if nc -w 2 "${{t%:*}}" "${{t#*:}}" </dev/null >/dev/null 2>&1; '
         'then echo "REACHED $t"; else echo "BLOCKED $t"; fi; done')


@pytest.fixture(scope="module")
def cc(make_sim, tmp_path_factory):
    sim = make_sim(home=2, office=1)
    ctx = tiny_context(tmp_path_factory.mktemp("tiny"))
    for host in MACHINES:
        sim.run(host, *tiny_build_command(ctx), timeout=300)
    cc = ControlCluster(sim, MACHINES)
    cc.boot_daemons()
    cc.init("home-1", edge="203.0.113.10:8443")
    cc.start_edge_mesh()
    cc.join("office-1", site="office")
    cc.join("home-2", site="home")
    cc.wait(lambda: len(cc.all_up() or {}) == 3, UP_TIMEOUT, "three machines up over the mesh")
    return cc


def mesh_addrs(cc) -> dict[str, str]:
    return {name: rec["addr"] for name, rec in cc.nodes("home-1").items()}


def running(cc, app: str) -> list[dict]:
    proc = cc.vcapp("home-1", "ps", app, "--json", check=False)
    rows = json.loads(proc.stdout) if proc.returncode == 0 else []
    return [r for r in rows if r["state"] == "running" and r["health"] == "healthy"]


@pytest.fixture(scope="module")
def apps(cc):
    """spy (public, a shell to attack from) and vault (token access, echoes what it got)."""
    cc.vcapp("home-1", "apps", "create", "spy", "--image", TINY_IMAGE, "--port", "8080",
             "--command", ECHO, "--health-path", "/")
    cc.vcapp("home-1", "apps", "create", "vault", "--image", TINY_IMAGE, "--port", "8080",
             "--command", ECHO, "--health-path", "/")
    cc.vcapp("home-1", "access", "vault", "token")
    spy = cc.wait(lambda: running(cc, "spy"), PLACE_WAIT_S, "spy healthy")[0]
    vault = cc.wait(lambda: running(cc, "vault"), PLACE_WAIT_S, "vault healthy")[0]
    return {"spy": spy, "vault": vault}


def in_container(cc, row: dict, script: str) -> str:
    proc = cc.sim.run(row["node"], "podman", "exec", row["container"], "sh", "-c", script, check=False, timeout=120)
    return proc.stdout + proc.stderr


def test_an_app_reaches_no_control_plane_port_on_any_machine_nor_the_edge(cc, apps):
    addrs = mesh_addrs(cc)
    targets = [f"{a}:{p}" for a in sorted(addrs.values()) for p in CONTROL_PORTS] + [f"{EDGE_MESH}:8443"]
    out = in_container(cc, apps["spy"], PROBE.format(targets=" ".join(targets)))
    assert "REACHED" not in out, out
    assert out.count("BLOCKED") == len(targets), out
    # The node router on the machine's mesh address answers the edge (the probe is not blind).
    cc.wait(lambda: status_via_router(cc, "spy", addrs[apps["spy"]["node"]]) == "200", 30, "spy through its router")


def status_via_router(cc, app: str, addr: str, *headers: str) -> str:
    """The status a node router answers the edge host for `app` (as the edge sends it)."""
    args = [a for h in headers for a in ("-H", h)]
    return cc.sim.run("edge", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                      "-H", f"Host: {app}.apps.test", *args, f"http://{addr}:7080/", check=False).stdout


def test_the_forged_admin_token_attack_fails_at_its_first_step(cc, apps):
    """etcd's v3 gateway from inside an app: the PUT under the admin token prefix never lands."""
    addr = mesh_addrs(cc)[apps["spy"]["node"]]
    key = base64.b64encode(b"/vc/tokens/admin/forged").decode()
    out = in_container(cc, apps["spy"], f"wget -q -T 3 -O - --post-data '{{\"key\": \"{key}\", \"value\": \"e30=\"}}' "
                                        f"http://{addr}:2379/v3/kv/put; echo rc=$?")
    assert "revision" not in out and "rc=0" not in out, out
    stored = cc.sim.etcdctl("home-1", sorted(mesh_addrs(cc).values()), "get", "--prefix", "/vc/tokens/admin/")
    assert "forged" not in stored.stdout


def test_a_token_apps_port_is_reached_only_through_a_router_that_checks_the_token(cc, apps):
    vault, spy = apps["vault"], apps["spy"]
    addrs = mesh_addrs(cc)
    port, home = vault["host_port"], addrs[vault["node"]]
    # Its published port: not from another machine, not from the edge, not from another app.
    other = next(m for m in MACHINES if m != vault["node"])
    for host in (other, "edge"):
        got = cc.sim.run(host, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3",
                         f"http://{home}:{port}/", check=False)
        assert got.stdout in ("000", ""), (host, got)
    assert "BLOCKED" in in_container(cc, spy, PROBE.format(targets=f"{home}:{port}"))
    # Its router, as the edge sends to it: without a token 401; with one the app answers and
    # gets the token's name, never the token.
    token = json.loads(cc.vcapp("home-1", "tokens", "create", "vault", "--name", "alice-phone", "--json").stdout)["token"]

    def via_router(machine: str, *headers: str) -> tuple[str, str]:
        args = [a for h in headers for a in ("-H", h)]
        out = cc.sim.run("edge", "curl", "-s", "-w", "\n%{http_code}", "--max-time", "5", "-H",
                         "Host: vault.apps.test", *args, f"http://{addrs[machine]}:7080/", check=False).stdout
        body, _, status = out.rpartition("\n")
        return status, body

    assert via_router(vault["node"])[0] == "401"
    bearer = f"Authorization: Bearer {token}"
    cc.wait(lambda: via_router(vault["node"], bearer)[0] == "200", 30, "vault answering with the token")
    status, seen = via_router(vault["node"], bearer, "Cookie: theme=dark")
    assert status == "200", seen
    assert token not in seen and "Authorization" not in seen, seen
    assert "X-Vcapp-Token-Name: alice-phone" in seen and "Cookie: theme=dark" in seen, seen
    # Through another machine's router: it checks the token and hops to the vault's machine.
    assert via_router(other)[0] == "401"
    cc.wait(lambda: via_router(other, bearer)[0] == "200", 30, "vault answering through another machine")
    status, seen = via_router(other, bearer)
    assert status == "200" and token not in seen and "X-Vcapp-Token-Name: alice-phone" in seen, seen
    # The hop port itself answers machines only: the edge gets 403 (or nothing).
    hop = cc.sim.run("edge", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3",
                     "-H", "Host: vault.apps.test", f"http://{home}:7081/", check=False)
    assert hop.stdout in ("403", "000"), hop


def test_a_build_step_reaches_no_control_plane_port(cc, apps, tmp_path):
    addrs = mesh_addrs(cc)
    targets = " ".join(f"{a}:{p}" for a in sorted(addrs.values()) for p in (2379, 7180, 5000))
    repo = tmp_path / "prober"
    repo.mkdir()
    (repo / "Dockerfile").write_text(f"FROM {TINY_IMAGE}\nRUN {PROBE.format(targets=targets)}\n"
                                     "CMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/\"]\n")

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(repo), "-c", "user.name=Eve", "-c", "user.email=eve@example.com",
                               *args], capture_output=True, text=True, timeout=300)

    git("init", "-q", "-b", "main")
    git("add", "Dockerfile")
    git("commit", "-q", "-m", "probe")
    cc.vcapp("home-1", "apps", "create", "prober", "--port", "8080")
    url = f"http://admin:{cc.admin_token}@{addrs['home-1']}:7180/git/prober.git"
    pushed = cc.sim.run("home-1", "git", "-C", str(repo), "push", url, "main", check=False, timeout=600)
    log = pushed.stdout + pushed.stderr
    said = re.findall(r"(REACHED|BLOCKED) (\d+\.\d+\.\d+\.\d+:\d+)", log)  # the step's output, not its echo
    assert said and {verdict for verdict, _ in said} == {"BLOCKED"}, log[-3000:]
    assert {target for _, target in said} == set(targets.split()), log[-3000:]
